//! The table's definition, for creating it where no deployment does (the local run, tests).
//! `template.yaml` declares the same keys and indexes for AWS.

use std::time::Duration;

use aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    LocalSecondaryIndex, Projection, ProjectionType, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification,
};

use super::{Store, StoreError, classify, keys};

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, StoreError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(|e| StoreError::Other(e.into()))
}

fn string_attribute(name: &str) -> Result<AttributeDefinition, StoreError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|e| StoreError::Other(e.into()))
}

fn all_attributes() -> Projection {
    Projection::builder()
        .projection_type(ProjectionType::All)
        .build()
}

/// How long a table may take to become active: DynamoDB creates one in seconds, an emulator at
/// once.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);

impl Store {
    /// Creates the table unless it exists, and waits until it is active; returns whether this
    /// call created it. Instances starting together over one endpoint agree: the one whose
    /// creation is refused as already under way waits for the other's.
    pub async fn ensure_table(&self) -> Result<bool, StoreError> {
        if self.table_status().await?.is_some() {
            self.wait_until_active().await?;
            return Ok(false);
        }
        match self.create_table()?.send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) =>
            {
                self.wait_until_active().await?;
                return Ok(false);
            }
            Err(e) => return Err(classify(e)),
        }
        // DynamoDB refuses a TTL setting on a table still being created.
        self.wait_until_active().await?;
        self.client()
            .update_time_to_live()
            .table_name(self.table())
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(keys::TTL)
                    .enabled(true)
                    .build()
                    .map_err(|e| StoreError::Other(e.into()))?,
            )
            .send()
            .await
            .map_err(classify)?;
        Ok(true)
    }

    /// The table's status, or `None` when there is no such table.
    async fn table_status(&self) -> Result<Option<TableStatus>, StoreError> {
        let described = self
            .client()
            .describe_table()
            .table_name(self.table())
            .send()
            .await;
        match described {
            Ok(output) => Ok(Some(
                output
                    .table()
                    .and_then(|t| t.table_status().cloned())
                    .unwrap_or(TableStatus::Active),
            )),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(classify(e)),
        }
    }

    async fn wait_until_active(&self) -> Result<(), StoreError> {
        let deadline = tokio::time::Instant::now() + TABLE_ACTIVE_TIMEOUT;
        loop {
            let status = self.table_status().await?;
            if status == Some(TableStatus::Active) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::Other(anyhow::anyhow!(
                    "table {} is not active after {TABLE_ACTIVE_TIMEOUT:?} (status {status:?})",
                    self.table()
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn create_table(&self) -> Result<CreateTableFluentBuilder, StoreError> {
        Ok(self
            .client()
            .create_table()
            .table_name(self.table())
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key(keys::PK, KeyType::Hash)?)
            .key_schema(key(keys::SK, KeyType::Range)?)
            .attribute_definitions(string_attribute(keys::PK)?)
            .attribute_definitions(string_attribute(keys::SK)?)
            .attribute_definitions(string_attribute(keys::GSI1_PK)?)
            .attribute_definitions(string_attribute(keys::GSI1_SK)?)
            .attribute_definitions(string_attribute(keys::LSI1_SK)?)
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(keys::GSI1)
                    .key_schema(key(keys::GSI1_PK, KeyType::Hash)?)
                    .key_schema(key(keys::GSI1_SK, KeyType::Range)?)
                    .projection(all_attributes())
                    .build()
                    .map_err(|e| StoreError::Other(e.into()))?,
            )
            .local_secondary_indexes(
                LocalSecondaryIndex::builder()
                    .index_name(keys::LSI1)
                    .key_schema(key(keys::PK, KeyType::Hash)?)
                    .key_schema(key(keys::LSI1_SK, KeyType::Range)?)
                    .projection(all_attributes())
                    .build()
                    .map_err(|e| StoreError::Other(e.into()))?,
            ))
    }
}
