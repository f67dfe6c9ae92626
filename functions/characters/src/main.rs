//! Lambda function serving FreeChat's characters and their backends.

fn main() -> Result<(), shared::runtime::Error> {
    shared::runtime::run(shared::api::Group::Characters)
}
