//! Who may use a channel: the kinds of channel by name, the [`Identity`] a client proved,
//! and the rules that join the two (sans-IO).
//!
//! | name | kind | who may subscribe |
//! |---|---|---|
//! | `private:…` | [`ChannelKind::Private`] | an identity whose `channels` grant the name |
//! | `user:<id>` | [`ChannelKind::User`] | only the identity whose user is `<id>` |
//! | anything else | [`ChannelKind::Public`] | everyone (anonymous clients too) |
//!
//! Publishing from a client needs a `publish` grant for the channel, whatever its kind.

/// What a verified client is: its user id and what its credential grants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The user (a JWT's `sub`), if the credential names one.
    pub user: Option<String>,
    /// Channels it may subscribe to beyond the public ones: exact names or `prefix*`.
    pub channels: Vec<String>,
    /// Channels it may publish to: exact names or `prefix*`.
    pub publish: Vec<String>,
    /// Anything the credential says about the user (JSON text), shown in presence.
    pub info: Option<String>,
    /// When the credential expires, in seconds since the Unix epoch.
    pub expires: Option<u64>,
}

/// A channel's kind, read from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind<'a> {
    /// Anyone may subscribe.
    Public,
    /// `private:…`: needs a `channels` grant.
    Private,
    /// `user:<id>`: the personal channel of user `<id>`.
    User(&'a str),
}

/// The prefix of private channels.
pub const PRIVATE_PREFIX: &str = "private:";

/// The prefix of personal channels (`user:<id>`).
pub const USER_PREFIX: &str = "user:";

impl<'a> ChannelKind<'a> {
    /// The kind of the channel named `name`.
    pub fn of(name: &'a str) -> ChannelKind<'a> {
        if name.starts_with(PRIVATE_PREFIX) {
            ChannelKind::Private
        } else if let Some(user) = name.strip_prefix(USER_PREFIX) {
            ChannelKind::User(user)
        } else {
            ChannelKind::Public
        }
    }
}

/// The personal channel of `user`.
pub fn user_channel(user: &str) -> String {
    format!("{USER_PREFIX}{user}")
}

/// Why a client may not use a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The channel needs a credential and the client has none (401).
    NeedsToken,
    /// The credential does not grant the channel (403).
    NotGranted,
    /// A `user:` channel of another user (403).
    OtherUser,
    /// The credential does not grant publishing to the channel (403).
    NoPublish,
}

impl Denied {
    /// The HTTP status (and `pushloop.v1` error code) of the refusal.
    pub fn status(self) -> u16 {
        match self {
            Denied::NeedsToken => 401,
            Denied::NotGranted | Denied::OtherUser | Denied::NoPublish => 403,
        }
    }
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Denied::NeedsToken => "a token is needed for this channel",
            Denied::NotGranted => "the token does not grant this channel",
            Denied::OtherUser => "the personal channel of another user",
            Denied::NoPublish => "the token may not publish to this channel",
        })
    }
}

impl std::error::Error for Denied {}

/// Whether one of `patterns` (exact names, or `prefix*`) matches `channel`.
pub fn grants(patterns: &[String], channel: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => channel.starts_with(prefix),
        None => p == channel,
    })
}

/// Whether `identity` (`None`: an anonymous client) may subscribe to `channel`.
pub fn may_subscribe(identity: Option<&Identity>, channel: &str) -> Result<(), Denied> {
    match (ChannelKind::of(channel), identity) {
        (ChannelKind::Public, _) => Ok(()),
        (_, None) => Err(Denied::NeedsToken),
        (ChannelKind::Private, Some(who)) if grants(&who.channels, channel) => Ok(()),
        (ChannelKind::Private, Some(_)) => Err(Denied::NotGranted),
        // The `channels` claim never opens a personal channel: only its user may.
        (ChannelKind::User(user), Some(who)) if who.user.as_deref() == Some(user) => Ok(()),
        (ChannelKind::User(_), Some(_)) => Err(Denied::OtherUser),
    }
}

/// Whether `identity` may publish a client message to `channel`.
pub fn may_publish(identity: Option<&Identity>, channel: &str) -> Result<(), Denied> {
    match identity {
        None => Err(Denied::NeedsToken),
        Some(who) if grants(&who.publish, channel) => Ok(()),
        Some(_) => Err(Denied::NoPublish),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Identity {
        Identity {
            user: Some("alice".into()),
            channels: vec![
                "private:team".into(),
                "private:room.*".into(),
                "user:*".into(),
            ],
            publish: vec!["chat.*".into()],
            ..Identity::default()
        }
    }

    #[test]
    fn kinds_by_name() {
        assert_eq!(ChannelKind::of("news"), ChannelKind::Public);
        assert_eq!(ChannelKind::of("private:x"), ChannelKind::Private);
        assert_eq!(ChannelKind::of("user:42"), ChannelKind::User("42"));
        assert_eq!(ChannelKind::of("users"), ChannelKind::Public);
        assert_eq!(user_channel("42"), "user:42");
    }

    #[test]
    fn subscribe_rules() {
        let a = alice();
        assert_eq!(may_subscribe(None, "news"), Ok(()));
        assert_eq!(may_subscribe(None, "private:team"), Err(Denied::NeedsToken));
        assert_eq!(may_subscribe(None, "user:alice"), Err(Denied::NeedsToken));
        assert_eq!(may_subscribe(Some(&a), "private:team"), Ok(()));
        assert_eq!(may_subscribe(Some(&a), "private:room.7"), Ok(()));
        assert_eq!(
            may_subscribe(Some(&a), "private:teams"),
            Err(Denied::NotGranted)
        );
        assert_eq!(may_subscribe(Some(&a), "user:alice"), Ok(()));
        // `user:*` in the claim does not open someone else's channel.
        assert_eq!(may_subscribe(Some(&a), "user:bob"), Err(Denied::OtherUser));
        let anonymous_token = Identity::default();
        assert_eq!(
            may_subscribe(Some(&anonymous_token), "user:"),
            Err(Denied::OtherUser)
        );
    }

    #[test]
    fn publish_rules() {
        let a = alice();
        assert_eq!(may_publish(Some(&a), "chat.lobby"), Ok(()));
        assert_eq!(may_publish(Some(&a), "news"), Err(Denied::NoPublish));
        assert_eq!(may_publish(None, "chat.lobby"), Err(Denied::NeedsToken));
        assert_eq!(Denied::NoPublish.status(), 403);
        assert_eq!(Denied::NeedsToken.status(), 401);
    }
}
