//! Lambda function serving FreeChat's characters and their backends.

#[tokio::main]
async fn main() -> Result<(), shared::runtime::Error> {
    shared::runtime::run(shared::api::Group::Characters).await
}
