//! Lambda function serving the chat endpoint group.

fn main() -> Result<(), shared::runtime::Error> {
    shared::runtime::run(shared::api::Group::Chat)
}
