//! Lambda function serving the conversations endpoint group.

fn main() -> Result<(), shared::runtime::Error> {
    shared::runtime::run(shared::api::Group::Conversations)
}
