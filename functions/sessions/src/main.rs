//! Lambda function serving FreeChat's chat sessions (all but their streaming routes).

fn main() -> Result<(), shared::api::lambda::Error> {
    shared::api::lambda::run(shared::api::Group::Sessions)
}
