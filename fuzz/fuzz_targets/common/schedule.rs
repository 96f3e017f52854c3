//! The chunking schedule shared by the targets that feed input in pieces.
//!
//! Input layout: `k = data[0] & 7` schedule bytes follow the first byte, then the payload.
//! Each schedule byte gives one chunk size; the sizes are used in a cycle. With no
//! schedule byte (`k == 0`) the payload is fed one byte at a time.
//!
//! A schedule byte `b < 0x80` means `1 + (b & 0x1f)` bytes (1..=32, cuts inside headers
//! and characters); `b >= 0x80` means `1 + ((b & 0x7f) << 6)` bytes (1..=8129, whole
//! frames in one piece).

/// Splits `data` into the chunk sizes (never empty, each > 0) and the payload.
pub fn split(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return (vec![1], data);
    };
    let k = ((first & 7) as usize).min(rest.len());
    let (sched, payload) = rest.split_at(k);
    let mut sizes: Vec<usize> = sched.iter().map(|&b| chunk_size(b)).collect();
    if sizes.is_empty() {
        sizes.push(1);
    }
    (sizes, payload)
}

fn chunk_size(b: u8) -> usize {
    if b < 0x80 {
        1 + (b & 0x1f) as usize
    } else {
        1 + (((b & 0x7f) as usize) << 6)
    }
}

/// The payload cut by the cycling sizes: `(start, end)` of each chunk, in order.
pub fn chunks(len: usize, sizes: &[usize]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while start < len {
        let end = (start + sizes[i % sizes.len()]).min(len);
        out.push((start, end));
        start = end;
        i += 1;
    }
    out
}
