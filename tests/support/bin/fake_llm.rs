//! The tests' fake OpenAI-compatible model as a process, for load runs of the local server:
//! prints its base URL, then answers every request with a short reply until killed.

#[tokio::main]
async fn main() {
    let fake = api_tests::FakeLlm::start().await;
    fake.always(api_tests::Script::reply(
        "A short answer from the load-test model.",
    ));
    println!("{}", fake.base_url);
    std::future::pending::<()>().await;
}
