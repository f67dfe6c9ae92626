//! Lambda function serving the conversations endpoint group.

fn main() -> Result<(), shared::api::lambda::Error> {
    shared::api::lambda::run(shared::api::Group::Conversations)
}
