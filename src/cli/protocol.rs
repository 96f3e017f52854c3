//! The client side of `pushloop.v1` (docs/protocol.md): the commands a client sends
//! (`subscribe`, `unsubscribe`, `publish`, `refresh`) and the server's answers to them.
//! A text message that is not one of these commands is a chat message, as before.

use serde::Deserialize;
use serde_json::json;

/// A `pushloop.v1` client command.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Command {
    /// Become a member of `channel`, first getting what it published after `since`.
    Subscribe {
        /// The channel.
        channel: String,
        /// The last id the client saw.
        since: Option<u64>,
        /// The client's number for this request, echoed in the answer.
        req: Option<u64>,
    },
    /// Stop being a member of `channel`.
    Unsubscribe {
        /// The channel.
        channel: String,
        /// The client's number for this request.
        req: Option<u64>,
    },
    /// Publish `data` (text) to `channel`.
    Publish {
        /// The channel.
        channel: String,
        /// The message.
        data: String,
        /// The client's number for this request, echoed in the `ack`.
        req: Option<u64>,
    },
    /// A fresh token, before the connection's expires.
    Refresh {
        /// The token.
        token: String,
        /// The client's number for this request.
        req: Option<u64>,
    },
}

/// The command types.
const TYPES: [&str; 4] = ["subscribe", "unsubscribe", "publish", "refresh"];

impl Command {
    /// The command `text` is: `None` when it is not one (a chat message), `Err` when it
    /// names a command type but is malformed.
    pub fn parse(text: &str) -> Option<Result<Command, String>> {
        if !text.trim_start().starts_with('{') {
            return None;
        }
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        let kind = value.get("type")?.as_str()?;
        if !TYPES.contains(&kind) {
            return None;
        }
        let kind = kind.to_owned();
        Some(serde_json::from_value(value).map_err(|e| format!("malformed {kind}: {e}")))
    }

    /// The request number, if the client gave one.
    pub fn req(&self) -> Option<u64> {
        match self {
            Command::Subscribe { req, .. }
            | Command::Unsubscribe { req, .. }
            | Command::Publish { req, .. }
            | Command::Refresh { req, .. } => *req,
        }
    }
}

/// The request number of a malformed command, if it has one.
pub fn req_of(text: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()?
        .get("req")?
        .as_u64()
}

/// `{"type":"subscribed","channel":"c","last_id":7,"req":1}`: `last_id` is the channel's
/// last id when the subscription began (what a client without `since` resumes from).
pub fn subscribed(channel: &str, last_id: u64, req: Option<u64>) -> String {
    with_req(
        json!({"type": "subscribed", "channel": channel, "last_id": last_id}),
        req,
    )
}

/// `{"type":"unsubscribed","channel":"c","req":1}`.
pub fn unsubscribed(channel: &str, req: Option<u64>) -> String {
    with_req(json!({"type": "unsubscribed", "channel": channel}), req)
}

/// `{"type":"refreshed","expires":1700000000,"req":1}`.
pub fn refreshed(expires: Option<u64>, req: Option<u64>) -> String {
    with_req(json!({"type": "refreshed", "expires": expires}), req)
}

/// `{"type":"error","code":403,"message":"…","req":1}`.
pub fn error(code: u16, message: &str, req: Option<u64>) -> String {
    with_req(
        json!({"type": "error", "code": code, "message": message}),
        req,
    )
}

fn with_req(mut value: serde_json::Value, req: Option<u64>) -> String {
    if let (Some(req), Some(map)) = (req, value.as_object_mut()) {
        map.insert("req".into(), req.into());
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_chat() {
        assert_eq!(
            Command::parse(r#"{"type":"subscribe","channel":"c","since":5,"req":1}"#),
            Some(Ok(Command::Subscribe {
                channel: "c".into(),
                since: Some(5),
                req: Some(1)
            }))
        );
        assert_eq!(
            Command::parse(r#"{"type":"publish","channel":"c","data":"hi"}"#),
            Some(Ok(Command::Publish {
                channel: "c".into(),
                data: "hi".into(),
                req: None
            }))
        );
        // Chat messages: plain text, the page's {name, text}, JSON of another type.
        assert_eq!(Command::parse("hello"), None);
        assert_eq!(Command::parse(r#"{"name":"a","text":"b"}"#), None);
        assert_eq!(Command::parse(r#"{"type":"presence"}"#), None);
        assert!(matches!(
            Command::parse(r#"{"type":"subscribe","req":3}"#),
            Some(Err(_))
        ));
        assert_eq!(req_of(r#"{"type":"subscribe","req":3}"#), Some(3));
    }

    #[test]
    fn answers() {
        assert_eq!(
            subscribed("c", 7, Some(1)),
            r#"{"channel":"c","last_id":7,"req":1,"type":"subscribed"}"#
        );
        assert_eq!(
            error(403, "no", None),
            r#"{"code":403,"message":"no","type":"error"}"#
        );
    }
}
