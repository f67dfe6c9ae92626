//! Lambda function serving the chat endpoint group.

fn main() -> Result<(), shared::api::lambda::Error> {
    shared::api::lambda::run(shared::api::Group::Chat)
}
