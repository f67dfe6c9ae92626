//! Lambda function serving the catalog endpoint group.

#[tokio::main]
async fn main() -> Result<(), shared::runtime::Error> {
    shared::runtime::run(shared::api::Group::Catalog).await
}
