//! A scripted API server for tests of the controller's IO (after controller-rs' `fixtures.rs`):
//! the requests a reconcile is expected to make, in order, and the answer each gets. Anything
//! else is answered 500 and recorded, so a test sees every request it did not expect.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

/// One expected request and its answer.
pub struct Exchange {
    method: Method,
    path: String,
    status: u16,
    body: Value,
}

impl Exchange {
    /// `method path` (without the query) is answered with `status` and `body`.
    pub fn new(method: Method, path: &str, status: u16, body: Value) -> Self {
        Self {
            method,
            path: path.to_owned(),
            status,
            body,
        }
    }

    /// The API server's refusal of a write made from an outdated resourceVersion.
    pub fn conflict(method: Method, path: &str) -> Self {
        Self::new(
            method,
            path,
            409,
            status(409, "Conflict", "the object has been modified"),
        )
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "reason": reason, "message": message, "code": code,
    })
}

/// The server: a script consumed in order, and a log of every request.
#[derive(Clone, Default)]
pub struct ApiServer {
    script: Arc<Mutex<VecDeque<Exchange>>>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl ApiServer {
    pub fn new(script: Vec<Exchange>) -> Self {
        Self {
            script: Arc::new(Mutex::new(script.into())),
            seen: Arc::default(),
        }
    }

    /// A client whose every request this server answers.
    pub fn client(&self) -> kube::Client {
        let server = self.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let response = server.answer(&request);
            async move { Ok::<_, std::convert::Infallible>(response) }
        });
        kube::Client::new(service, "default")
    }

    fn answer(&self, request: &Request<Body>) -> Response<Body> {
        let line = format!("{} {}", request.method(), request.uri().path());
        self.seen.lock().expect("log").push(line.clone());
        let expected = self.script.lock().expect("script").pop_front();
        let (code, body) = match expected {
            Some(e) if e.method == request.method() && e.path == request.uri().path() => {
                (e.status, e.body)
            }
            Some(e) => {
                let message = format!("expected {} {}, got {line}", e.method, e.path);
                (500, status(500, "Unexpected", &message))
            }
            None => (
                500,
                status(500, "Unexpected", &format!("unscripted {line}")),
            ),
        };
        Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&body).expect("JSON")))
            .expect("response")
    }

    /// Every request made, as `METHOD /path`.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("log").clone()
    }

    /// Scripted exchanges that never happened.
    pub fn unused(&self) -> usize {
        self.script.lock().expect("script").len()
    }
}
