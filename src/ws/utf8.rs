//! Incremental UTF-8 validation (RFC 6455 §8.1): a text message may be checked in pieces
//! as its bytes arrive, and fails at the first byte that makes it invalid.

/// Validation state carried between pieces: the bytes of a character cut by a piece end.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Utf8State {
    pending: [u8; 4],
    len: u8,
}

/// The input is not UTF-8, or ended inside a character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

/// The width of the character that starts with `lead` (already known to be a valid lead).
fn char_width(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

impl Utf8State {
    /// Checks the next piece of a text message.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), Invalid> {
        if self.len > 0 {
            data = self.complete_pending(data)?;
            if self.len > 0 {
                return Ok(()); // the piece ended before the character did
            }
        }
        match std::str::from_utf8(data) {
            Ok(_) => Ok(()),
            // `error_len() == None`: the input ends inside a character that is valid so far.
            Err(e) if e.error_len().is_none() => {
                let tail = &data[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(Invalid),
        }
    }

    /// Moves bytes from `data` into the pending character; returns what is left of `data`.
    fn complete_pending<'a>(&mut self, data: &'a [u8]) -> Result<&'a [u8], Invalid> {
        let have = self.len as usize;
        let width = char_width(self.pending[0]);
        let take = (width - have).min(data.len());
        self.pending[have..have + take].copy_from_slice(&data[..take]);
        self.len += take as u8;
        match std::str::from_utf8(&self.pending[..self.len as usize]) {
            Ok(_) => self.len = 0,
            Err(e) if e.error_len().is_none() => {}
            Err(_) => return Err(Invalid),
        }
        Ok(&data[take..])
    }

    /// Ends the message: valid only if no character was left open.
    pub fn finish(&mut self) -> Result<(), Invalid> {
        let open = self.len != 0;
        *self = Utf8State::default();
        if open {
            Err(Invalid)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check_split(bytes: &[u8]) -> Vec<bool> {
        (0..=bytes.len())
            .map(|cut| {
                let mut s = Utf8State::default();
                s.feed(&bytes[..cut]).is_ok() && s.feed(&bytes[cut..]).is_ok() && s.finish().is_ok()
            })
            .collect()
    }

    #[test]
    fn valid_text_passes_at_every_split() {
        let text = "κόσμε aé€𝄞".as_bytes();
        assert!(check_split(text).iter().all(|ok| *ok));
    }

    #[test]
    fn invalid_fails_at_every_split() {
        for bad in [
            &b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"[..],
            b"\xf4\x90\x80\x80",
            b"\xc0\xaf",
            b"ab\xe1\x80",
        ] {
            assert!(check_split(bad).iter().all(|ok| !ok), "{bad:?}");
        }
    }

    #[test]
    fn fails_fast_inside_a_character() {
        // 0xF4 0x90 starts a code point above U+10FFFF: invalid before the character ends.
        let mut s = Utf8State::default();
        assert_eq!(s.feed(b"ok\xf4"), Ok(()));
        assert_eq!(s.feed(b"\x90"), Err(Invalid));
        // A surrogate (ED A0..) is invalid at its second byte.
        let mut s = Utf8State::default();
        assert_eq!(s.feed(b"\xed\xa0"), Err(Invalid));
    }

    #[test]
    fn open_character_fails_at_finish() {
        let mut s = Utf8State::default();
        assert_eq!(s.feed(b"\xe2\x82"), Ok(()));
        assert_eq!(s.finish(), Err(Invalid));
        assert_eq!(s.finish(), Ok(()));
    }

    proptest! {
        #[test]
        fn agrees_with_std_in_byte_pieces(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut s = Utf8State::default();
            let incremental = bytes.iter().all(|b| s.feed(&[*b]).is_ok()) && s.finish().is_ok();
            prop_assert_eq!(incremental, std::str::from_utf8(&bytes).is_ok());
        }
    }
}
