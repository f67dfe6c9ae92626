//! Lambda function serving FreeChat's characters and their backends.

fn main() -> Result<(), shared::api::lambda::Error> {
    shared::api::lambda::run(shared::api::Group::Characters)
}
