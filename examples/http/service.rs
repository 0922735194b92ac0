//! The HTTP service `http` serves: routes to responses, no I/O of its own beyond a timer for
//! `/delay`, so that `benches/peers`' tokio server runs the very same code (`#[path]`).
//!
//! `sleep` is passed in (coreio's or tokio's) for the same reason.

use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

/// The largest `/bytes/N`.
pub const MAX_BYTES: usize = 16 << 20;
/// The longest `/delay/MS`.
pub const MAX_DELAY_MS: u64 = 60_000;

const HELLO: &[u8] = b"Hello from coreio\n";

thread_local! {
    /// `MAX_BYTES` of `x`, made once per thread on the first `/bytes`; each response is a
    /// slice of it (a reference count, no copy).
    static FILLER: RefCell<Option<Bytes>> = const { RefCell::new(None) };
}

/// What the routes served, for the stop-time report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub ok: u64,
    pub not_found: u64,
    pub bad: u64,
}

/// Answers one request. `sleep` waits on the caller's runtime.
pub async fn respond<S, F>(request: Request<Incoming>, sleep: S) -> (Response<Full<Bytes>>, Route)
where
    S: FnOnce(Duration) -> F,
    F: Future<Output = ()>,
{
    let route = Route::of(request.method(), request.uri().path());
    let response = match &route {
        Route::Hello => text(StatusCode::OK, Bytes::from_static(HELLO)),
        Route::Bytes(n) => {
            let mut response = Response::new(Full::new(filler(*n)));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            response
        }
        Route::Delay(ms) => {
            sleep(Duration::from_millis(*ms)).await;
            text(StatusCode::OK, Bytes::from(format!("waited {ms} ms\n")))
        }
        Route::BadArgument(why) => text(StatusCode::BAD_REQUEST, Bytes::from(why.clone())),
        Route::NotFound => text(StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n")),
        Route::MethodNotAllowed => {
            let mut response = text(
                StatusCode::METHOD_NOT_ALLOWED,
                Bytes::from_static(b"only GET and HEAD\n"),
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            response
        }
    };
    (response, route)
}

/// Which route a request took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Hello,
    Bytes(usize),
    Delay(u64),
    BadArgument(String),
    NotFound,
    MethodNotAllowed,
}

impl Route {
    fn of(method: &Method, path: &str) -> Route {
        if method != Method::GET && method != Method::HEAD {
            return Route::MethodNotAllowed;
        }
        if path == "/" {
            return Route::Hello;
        }
        if let Some(n) = path.strip_prefix("/bytes/") {
            return match n.parse::<usize>() {
                Ok(n) if n <= MAX_BYTES => Route::Bytes(n),
                _ => Route::BadArgument(format!(
                    "/bytes/N takes a count of at most {MAX_BYTES}, got {n:?}\n"
                )),
            };
        }
        if let Some(ms) = path.strip_prefix("/delay/") {
            return match ms.parse::<u64>() {
                Ok(ms) if ms <= MAX_DELAY_MS => Route::Delay(ms),
                _ => Route::BadArgument(format!(
                    "/delay/MS takes milliseconds, at most {MAX_DELAY_MS}, got {ms:?}\n"
                )),
            };
        }
        Route::NotFound
    }

    /// Adds this route's outcome to `counts`.
    pub fn count(&self, counts: &mut Counts) {
        match self {
            Route::Hello | Route::Bytes(_) | Route::Delay(_) => counts.ok += 1,
            Route::NotFound => counts.not_found += 1,
            Route::BadArgument(_) | Route::MethodNotAllowed => counts.bad += 1,
        }
    }
}

fn text(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn filler(n: usize) -> Bytes {
    FILLER.with(|filler| {
        filler
            .borrow_mut()
            .get_or_insert_with(|| Bytes::from(vec![b'x'; MAX_BYTES]))
            .slice(..n)
    })
}
