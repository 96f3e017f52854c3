//! Messages as the program sees them: text or binary, borrowed or owned.

/// Whether a message is text or binary, without its payload: what channel history keeps
/// and the push formats are told (text goes out as a JSON string or SSE `data:` lines,
/// binary as base64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A text message (valid UTF-8).
    Text,
    /// A binary message.
    Binary,
}

/// A message, borrowed: what handlers receive, and what they send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message (valid UTF-8).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// The text, for a text message.
    pub fn as_text(&self) -> Option<&'a str> {
        match self {
            Message::Text(t) => Some(t),
            Message::Binary(_) => None,
        }
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }

    /// Whether this is a text or a binary message.
    pub fn kind(&self) -> Kind {
        match self {
            Message::Text(_) => Kind::Text,
            Message::Binary(_) => Kind::Binary,
        }
    }
}

/// Anything a message can be sent from: `&str` and `String` are text, `&[u8]`,
/// `Vec<u8>` and byte arrays binary, and a [`Message`] or [`OwnedMessage`] says which
/// itself. [`Context::send`](crate::Context::send), `broadcast` and `publish` take any
/// of them, so `ctx.send(id, format!("hello {name}"))` and `ctx.send(id, msg)` both work.
pub trait ToMessage {
    /// The message, borrowed from `self`.
    fn to_message(&self) -> Message<'_>;
}

impl ToMessage for Message<'_> {
    fn to_message(&self) -> Message<'_> {
        *self
    }
}

impl ToMessage for OwnedMessage {
    fn to_message(&self) -> Message<'_> {
        self.as_message()
    }
}

impl ToMessage for str {
    fn to_message(&self) -> Message<'_> {
        Message::Text(self)
    }
}

impl ToMessage for String {
    fn to_message(&self) -> Message<'_> {
        Message::Text(self)
    }
}

impl ToMessage for [u8] {
    fn to_message(&self) -> Message<'_> {
        Message::Binary(self)
    }
}

impl ToMessage for Vec<u8> {
    fn to_message(&self) -> Message<'_> {
        Message::Binary(self)
    }
}

impl<const N: usize> ToMessage for [u8; N] {
    fn to_message(&self) -> Message<'_> {
        Message::Binary(self)
    }
}

impl<T: ToMessage + ?Sized> ToMessage for &T {
    fn to_message(&self) -> Message<'_> {
        (**self).to_message()
    }
}

impl<'a> From<&'a str> for Message<'a> {
    fn from(t: &'a str) -> Self {
        Message::Text(t)
    }
}

impl<'a> From<&'a String> for Message<'a> {
    fn from(t: &'a String) -> Self {
        Message::Text(t)
    }
}

impl<'a> From<&'a [u8]> for Message<'a> {
    fn from(b: &'a [u8]) -> Self {
        Message::Binary(b)
    }
}

impl<'a> From<&'a Vec<u8>> for Message<'a> {
    fn from(b: &'a Vec<u8>) -> Self {
        Message::Binary(b)
    }
}

/// An owned message, for sending from other threads through a [`Handle`](crate::Handle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedMessage {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl OwnedMessage {
    /// A borrowed view.
    pub fn as_message(&self) -> Message<'_> {
        match self {
            OwnedMessage::Text(t) => Message::Text(t),
            OwnedMessage::Binary(b) => Message::Binary(b),
        }
    }
}

impl From<String> for OwnedMessage {
    fn from(t: String) -> Self {
        OwnedMessage::Text(t)
    }
}

impl From<&str> for OwnedMessage {
    fn from(t: &str) -> Self {
        OwnedMessage::Text(t.to_owned())
    }
}

impl From<&[u8]> for OwnedMessage {
    fn from(b: &[u8]) -> Self {
        OwnedMessage::Binary(b.to_vec())
    }
}

impl From<Vec<u8>> for OwnedMessage {
    fn from(b: Vec<u8>) -> Self {
        OwnedMessage::Binary(b)
    }
}

impl From<Message<'_>> for OwnedMessage {
    fn from(m: Message<'_>) -> Self {
        match m {
            Message::Text(t) => OwnedMessage::Text(t.to_owned()),
            Message::Binary(b) => OwnedMessage::Binary(b.to_vec()),
        }
    }
}

impl<'a> From<&'a OwnedMessage> for Message<'a> {
    fn from(m: &'a OwnedMessage) -> Self {
        m.as_message()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(msg: impl ToMessage) -> Kind {
        msg.to_message().kind()
    }

    #[test]
    fn text_and_bytes_say_their_kind() {
        let name = "ana";
        assert_eq!(kind_of(format!("hello {name}")), Kind::Text);
        assert_eq!(kind_of("hi"), Kind::Text);
        assert_eq!(kind_of(String::from("hi")), Kind::Text);
        assert_eq!(kind_of(vec![1u8, 2]), Kind::Binary);
        assert_eq!(kind_of(&[1u8, 2][..]), Kind::Binary);
        assert_eq!(kind_of(b"bytes"), Kind::Binary);
        assert_eq!(kind_of(Message::Text("x")), Kind::Text);
        assert_eq!(kind_of(OwnedMessage::Binary(vec![])), Kind::Binary);
        assert_eq!("hi".to_message(), Message::Text("hi"));
    }

    #[test]
    fn kind_follows_the_variant() {
        assert_eq!(Message::Text("hi").kind(), Kind::Text);
        assert_eq!(Message::Binary(b"hi").kind(), Kind::Binary);
        assert_eq!(Message::Text("").kind(), Kind::Text);
        assert_eq!(Message::Binary(b"").kind(), Kind::Binary);
    }
}
