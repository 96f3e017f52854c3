//! What a handler answers: an HTTP response, a stream, a held request, or a refused
//! upgrade.

/// A refused upgrade: the HTTP status and a short body sent instead of `101`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status, e.g. 403 or 404.
    pub status: u16,
    /// A short body: plain text, unless `headers` name another `Content-Type`.
    pub body: String,
    /// Extra headers (e.g. `Content-Type`, `Retry-After`, `WWW-Authenticate`).
    pub headers: Vec<(String, String)>,
}

impl Refusal {
    /// A refusal with `status` and a plain-text `body`.
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Refusal {
            status,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// A refusal with `status` and the JSON body `{"error":"<error>"}`.
    pub fn json(status: u16, error: &str) -> Self {
        let body = serde_json::json!({ "error": error }).to_string();
        Refusal {
            status,
            body,
            headers: vec![("Content-Type".into(), "application/json".into())],
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The refusal as a whole response (for a plain HTTP request).
    pub fn into_response(self) -> Response {
        let mut response = Response::text(self.status, &self.body);
        if self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            response.headers.clear();
        }
        response.headers.extend(self.headers);
        response
    }
}

/// A plain HTTP response to a request that did not ask for an upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// Headers besides `Content-Length` and `Connection`, which the server writes.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with `status`, a `Content-Type` and a body.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }

    /// A `text/plain` response; a newline is added to the body.
    pub fn text(status: u16, body: &str) -> Self {
        Response::new(status, "text/plain; charset=utf-8", format!("{body}\n"))
    }

    /// An `application/json` response.
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response::new(status, "application/json", body)
    }

    /// `426 Upgrade Required` for a plain request to a WebSocket endpoint, with the
    /// headers RFC 6455 §4.2.2 asks for.
    pub fn upgrade_required() -> Self {
        let mut response = Response::text(426, "websocket upgrade required");
        for (name, value) in crate::ws::handshake::UPGRADE_REQUIRED_HEADERS {
            response = response.header(name, value);
        }
        response
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// What the server does with a plain HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Send a response. Statuses below 400 keep the connection for the next request
    /// (HTTP/1.1 keep-alive) unless the client asked to close; errors close it.
    Response(Response),
    /// Send `response`'s status, headers and body, and keep the body open: later bytes
    /// are delivered to the connection (e.g. Server-Sent Events) until the peer goes.
    /// With a `heartbeat`, its bytes are sent whenever the stream was quiet that long.
    Stream {
        /// The head, and the first bytes of the body.
        response: Response,
        /// Bytes that keep an idle stream alive, and how often.
        heartbeat: Option<Heartbeat>,
    },
    /// Hold the request: answer it later with
    /// [`Context::respond`](crate::Context::respond), or with `fallback` once `timeout`
    /// passes (long polling). Requests pipelined behind it wait their turn.
    Hold {
        /// How long to hold it.
        timeout: std::time::Duration,
        /// The answer when nothing else answered it in time.
        fallback: Response,
    },
}

/// What keeps an idle stream alive: `bytes`, sent whenever the stream was quiet for
/// `every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// How long the stream may be quiet.
    pub every: std::time::Duration,
    /// What to send then (e.g. an SSE comment).
    pub bytes: &'static [u8],
}

impl From<Response> for Reply {
    fn from(response: Response) -> Self {
        Reply::Response(response)
    }
}
