//! Lambda function serving the catalog endpoint group.

fn main() -> Result<(), shared::api::lambda::Error> {
    shared::api::lambda::run(shared::api::Group::Catalog)
}
