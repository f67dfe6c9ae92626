//! Lambda function serving the documents endpoint group.

fn main() -> Result<(), shared::runtime::Error> {
    shared::runtime::run(shared::api::Group::Documents)
}
