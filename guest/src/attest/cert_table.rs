//! The certificate table a host may attach to extended reports (GHCB spec,
//! SNP extended guest request): entries of a 16-byte GUID, a 32-bit offset
//! and a 32-bit length, ended by an all-zero entry. We only want the VCEK;
//! the verifier checks whatever we pass on, so a bad table costs a lookup.

/// 63da758d-e664-4564-adc5-f4b93be8accd, in the table's byte order.
const VCEK_GUID: [u8; 16] = [
    0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd,
];
const ENTRY: usize = 24;
/// A table longer than this is not one a host would send.
const MAX_ENTRIES: usize = 64;

/// The VCEK in a certificate table, if it has one that lies inside it.
pub fn vcek(table: &[u8]) -> Option<Vec<u8>> {
    for i in 0..MAX_ENTRIES {
        let entry = table.get(i * ENTRY..(i + 1) * ENTRY)?;
        let (guid, rest) = entry.split_at(16);
        if entry.iter().all(|&b| b == 0) {
            return None;
        }
        let offset = u32::from_le_bytes(rest[0..4].try_into().ok()?) as usize;
        let length = u32::from_le_bytes(rest[4..8].try_into().ok()?) as usize;
        if guid == VCEK_GUID {
            let end = offset.checked_add(length)?;
            return table.get(offset..end).map(<[u8]>::to_vec);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[([u8; 16], u32, u32)], payload: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        for (g, o, l) in entries {
            t.extend_from_slice(g);
            t.extend_from_slice(&o.to_le_bytes());
            t.extend_from_slice(&l.to_le_bytes());
        }
        t.extend_from_slice(&[0; ENTRY]);
        t.extend_from_slice(payload);
        t
    }

    #[test]
    fn finds_the_vcek_among_other_certificates() {
        let other = [1u8; 16];
        let t = table(&[(other, 72, 3), (VCEK_GUID, 75, 4)], b"ASKVCEK");
        assert_eq!(vcek(&t).unwrap(), b"VCEK");
    }

    #[test]
    fn bad_tables_give_nothing_and_never_panic() {
        assert_eq!(vcek(&[]), None);
        assert_eq!(vcek(&table(&[], b"")), None);
        assert_eq!(vcek(&table(&[(VCEK_GUID, 48, 100)], b"short")), None);
        assert_eq!(vcek(&table(&[(VCEK_GUID, u32::MAX, u32::MAX)], b"")), None);
        let t = table(&[(VCEK_GUID, 48, 4)], b"VCEK");
        for n in 0..t.len() {
            let _ = vcek(&t[..n]);
        }
    }
}
