//! Lambda function serving the documents endpoint group.

fn main() -> Result<(), shared::api::lambda::Error> {
    shared::api::lambda::run(shared::api::Group::Documents)
}
