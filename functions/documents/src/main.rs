//! Lambda function serving the documents endpoint group.

#[tokio::main]
async fn main() -> Result<(), shared::runtime::Error> {
    shared::runtime::run(shared::api::Group::Documents).await
}
