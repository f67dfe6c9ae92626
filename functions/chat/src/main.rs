//! Lambda function serving the chat endpoint group.

#[tokio::main]
async fn main() -> Result<(), shared::runtime::Error> {
    shared::runtime::run(shared::api::Group::Chat).await
}
