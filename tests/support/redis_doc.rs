// The doc examples of `tokio_conc::redis` include this file: a real
// `redis-server` (or a line saying the example was skipped), twenty jobs in
// stream `doc-jobs`, and a source on it as consumer `doc-1` of group `doc`.

#[allow(dead_code)]
mod redis_server {
    include!("redis_server.rs");
}
use redis_server::RedisServer;

static DOC_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// A client for the example's server.
#[allow(dead_code)]
fn doc_client() -> tokio_conc::redis::Client {
    tokio_conc::redis::open(DOC_URL.get().expect("inside doc_example")).unwrap()
}

/// Runs `example` on a fresh server with a connected source.
fn doc_example<F, Fut>(example: F)
where
    F: FnOnce(tokio_conc::redis::Deliveries<tokio_conc::redis::Fields>) -> Fut,
    Fut: std::future::Future<Output = Result<(), tokio_conc::redis::Error>>,
{
    use futures::StreamExt as _;
    let Some(server) = RedisServer::start("this example") else {
        return;
    };
    DOC_URL.set(server.url()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = doc_client();
        let jobs = futures::stream::iter(1..=20_u32).map(|n| [("job", n)]);
        tokio_conc::redis::RedisSink::new(&client, "doc-jobs")
            .write_all(jobs)
            .await
            .unwrap();
        let source = tokio_conc::redis::RedisSource::new(&client, "doc-jobs", "doc", "doc-1")
            .connect()
            .await
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(30), example(source))
            .await
            .expect("the example hung")
            .unwrap();
    });
    drop(server);
}
