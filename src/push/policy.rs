//! Backlog policies per channel: `ticker.*=latest` gives every channel whose name starts
//! with `ticker.` the `latest` policy; the first matching rule wins, and channels no rule
//! matches get the default.

use crate::server::backlog::Policy;
use std::str::FromStr;

/// A channel pattern with its policy: an exact name, or a prefix ending in `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPolicy {
    /// `ticker`, or `ticker.*` for every channel starting with `ticker.`.
    pub pattern: String,
    /// The policy for matching channels.
    pub policy: Policy,
}

impl ChannelPolicy {
    /// Whether `channel` matches the pattern.
    pub fn matches(&self, channel: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => channel.starts_with(prefix),
            None => channel == self.pattern,
        }
    }
}

impl FromStr for ChannelPolicy {
    type Err = String;

    /// Parses `PATTERN=POLICY`, e.g. `ticker.*=latest`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (pattern, policy) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}`: expected CHANNEL=POLICY, e.g. ticker.*=latest"))?;
        if pattern.is_empty() {
            return Err(format!("`{s}`: empty channel pattern"));
        }
        Ok(ChannelPolicy {
            pattern: pattern.to_owned(),
            policy: policy.parse()?,
        })
    }
}

/// The first matching channel policy, else `default`.
pub fn policy_for(rules: &[ChannelPolicy], default: Policy, channel: &str) -> Policy {
    rules
        .iter()
        .find(|r| r.matches(channel))
        .map_or(default, |r| r.policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_patterns_match_exactly_or_by_prefix() {
        let rules: Vec<ChannelPolicy> = ["ticker.*=latest", "chat=drop-newest", "*=drop-oldest"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(
            policy_for(&rules, Policy::Close, "ticker.eur"),
            Policy::Latest
        );
        assert_eq!(
            policy_for(&rules, Policy::Close, "chat"),
            Policy::DropNewest
        );
        assert_eq!(
            policy_for(&rules, Policy::Close, "chat2"),
            Policy::DropOldest
        );
        assert_eq!(
            policy_for(&rules[..2], Policy::Close, "other"),
            Policy::Close
        );
        assert!("ticker".parse::<ChannelPolicy>().is_err());
        assert!("=latest".parse::<ChannelPolicy>().is_err());
        assert!("a=fast".parse::<ChannelPolicy>().is_err());
    }
}
