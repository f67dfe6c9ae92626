//! Lambda function serving FreeChat's chat sessions (all but their streaming routes).

fn main() -> Result<(), shared::runtime::Error> {
    shared::runtime::run(shared::api::Group::Sessions)
}
