//! Lambda function serving the catalog endpoint group.

fn main() -> Result<(), shared::runtime::Error> {
    shared::runtime::run(shared::api::Group::Catalog)
}
