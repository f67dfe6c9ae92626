//! Lambda function serving FreeChat's chat sessions (all but their streaming routes).

#[tokio::main]
async fn main() -> Result<(), shared::runtime::Error> {
    shared::runtime::run(shared::api::Group::Sessions).await
}
