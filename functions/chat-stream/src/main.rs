//! Lambda function serving the chat-stream endpoint group.

fn main() -> Result<(), shared::api::lambda::Error> {
    shared::api::lambda::run_streaming(shared::api::Group::ChatStream)
}
