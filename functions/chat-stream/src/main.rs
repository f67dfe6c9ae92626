//! Lambda function serving the chat-stream endpoint group.

fn main() -> Result<(), shared::runtime::Error> {
    shared::runtime::run_streaming(shared::api::Group::ChatStream)
}
