//! The table's definition, for creating it where no deployment does (the local run, tests).
//! `template.yaml` declares the same keys and indexes for AWS.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    LocalSecondaryIndex, Projection, ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
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

impl Store {
    /// Creates the table unless it exists; returns whether it was created.
    pub async fn ensure_table(&self) -> Result<bool, StoreError> {
        let exists = self
            .client()
            .describe_table()
            .table_name(self.table())
            .send()
            .await;
        match exists {
            Ok(_) => return Ok(false),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) => {}
            Err(e) => return Err(classify(e)),
        }
        self.client()
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
            )
            .send()
            .await
            .map_err(classify)?;
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
}
