//! Lambda function serving the conversations endpoint group.

#[tokio::main]
async fn main() -> Result<(), shared::runtime::Error> {
    shared::runtime::run(shared::api::Group::Conversations).await
}
