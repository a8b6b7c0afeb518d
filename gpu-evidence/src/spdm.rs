//! SPDM 1.1 GET_MEASUREMENTS request and MEASUREMENTS response, as an
//! NVIDIA H100 in CC mode hands them out (DMTF DSP0274 1.1.1, §10.11).
//!
//! The evidence is one byte string: the 37-byte request the verifier's side
//! sent, then the GPU's response, whose last 96 bytes are an ECDSA P-384
//! signature (r‖s) over everything before it. The parser is strict: every
//! length field is checked against what is left before it is used, nothing
//! is allocated from a length field (only copies of bytes that are there),
//! and bytes after the signature are an error unless the caller asked for
//! the one known exception ([`Trailing::AllowOneZeroByte`]).

use thiserror::Error;

use super::opaque::{OpaqueData, OpaqueError};

/// SPDM version 1.1, the version H100 firmware speaks for measurements.
pub const SPDM_VERSION_1_1: u8 = 0x11;
/// RequestResponseCode of GET_MEASUREMENTS.
pub const GET_MEASUREMENTS: u8 = 0xE0;
/// RequestResponseCode of MEASUREMENTS.
pub const MEASUREMENTS: u8 = 0x60;
/// Length of the requester's and the responder's nonce.
pub const NONCE_LEN: usize = 32;
/// ECDSA P-384 as SPDM carries it: r and s, 48 bytes each, big-endian.
pub const SIGNATURE_LEN: usize = 96;
/// The request with a signature asked for: header (4), nonce (32), slot (1).
pub const REQUEST_LEN: usize = 4 + NONCE_LEN + 1;
/// Far above the ~4 KiB an H100 sends; refuses absurd inputs up front.
pub const MAX_REPORT_LEN: usize = 1 << 20;
/// DSP0274 1.1: "OpaqueLength ... shall not be greater than 1024 bytes".
pub const MAX_OPAQUE_LEN: usize = 1024;
/// Param2 of GET_MEASUREMENTS: "all measurement blocks".
const ALL_MEASUREMENTS: u8 = 0xFF;
/// Param1 bit 0 of GET_MEASUREMENTS: a signature is requested.
const SIGNATURE_REQUESTED: u8 = 0x01;
/// MeasurementSpecification bit 0: the DMTF measurement layout.
const DMTF_SPECIFICATION: u8 = 0x01;
/// SPDM 1.1 allows certificate slots 0 to 7.
const MAX_SLOT: u8 = 7;

/// What to do with bytes after the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Trailing {
    /// Anything after the signature is an error (the default).
    #[default]
    Reject,
    /// Accept exactly one `00` byte after the signature: some capture tools
    /// (the second real report in our test data) append one. It lies
    /// outside the signed bytes, so ignoring it changes nothing that is
    /// verified; any other trailing content is still an error.
    AllowOneZeroByte,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SpdmError {
    #[error("report is {len} bytes, more than the {max} accepted")]
    TooLarge { len: usize, max: usize },
    #[error("truncated: {field} needs {needed} bytes at offset {offset}, only {available} left")]
    Truncated {
        field: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("request: SPDM version {0:#04x}, expected 0x11")]
    RequestVersion(u8),
    #[error("request: code {0:#04x} is not GET_MEASUREMENTS (0xe0)")]
    RequestCode(u8),
    #[error("request: Param1 {0:#04x} does not ask for a signature (only 0x01 is accepted)")]
    SignatureNotRequested(u8),
    #[error(
        "request: Param2 {0:#04x} does not ask for all measurement blocks (0xff); a partial report cannot be compared"
    )]
    NotAllMeasurements(u8),
    #[error("request: slot {0} is not a valid SPDM 1.1 certificate slot (0-7)")]
    RequestSlot(u8),
    #[error("response: SPDM version {0:#04x}, expected 0x11")]
    ResponseVersion(u8),
    #[error("response: code {0:#04x} is not MEASUREMENTS (0x60)")]
    ResponseCode(u8),
    #[error("response: slot {response} does not match the requested slot {request}")]
    SlotMismatch { request: u8, response: u8 },
    #[error("response: no measurement blocks")]
    NoBlocks,
    #[error(
        "response: NumberOfBlocks says {declared}, the record holds more bytes after {parsed} blocks"
    )]
    RecordLongerThanBlocks { declared: usize, parsed: usize },
    #[error(
        "measurement block {position}: index {index} is reserved (0 and 0xff are not block indices)"
    )]
    ReservedIndex { position: usize, index: u8 },
    #[error("measurement block index {0} appears twice")]
    DuplicateIndex(u8),
    #[error("measurement block {index}: specification {spec:#04x} is not the DMTF layout (0x01)")]
    NotDmtf { index: u8, spec: u8 },
    #[error(
        "measurement block {index}: MeasurementSize {declared} but the DMTF value needs {actual}"
    )]
    BlockSize {
        index: u8,
        declared: usize,
        actual: usize,
    },
    #[error("response: OpaqueLength {0} exceeds the SPDM 1.1 limit of 1024 bytes")]
    OpaqueTooLong(usize),
    #[error("opaque data: {0}")]
    Opaque(#[from] OpaqueError),
    #[error("{count} byte(s) after the signature")]
    TrailingBytes { count: usize },
}

/// The GET_MEASUREMENTS request, as the verifier's side sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub nonce: [u8; NONCE_LEN],
    pub slot: u8,
}

/// One DMTF measurement block of the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasurementBlock {
    /// 1-based block index (NVIDIA's RIMs number from 0: RIM index + 1).
    pub index: u8,
    /// DMTFSpecMeasurementValueType bits 6:0 (0 immutable ROM, 1 mutable
    /// firmware, 2 hardware configuration, 3 firmware configuration, ...).
    pub value_type: u8,
    /// Bit 7 of the value type: the value is a raw bit stream, not a digest.
    pub raw: bool,
    pub value: Vec<u8>,
}

/// The MEASUREMENTS response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub slot: u8,
    pub blocks: Vec<MeasurementBlock>,
    /// The responder's own nonce (not the one we chose: that is in the request).
    pub nonce: [u8; NONCE_LEN],
    pub opaque: OpaqueData,
    pub signature: [u8; SIGNATURE_LEN],
}

/// A parsed report: request, response, and where the signed bytes end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub request: Request,
    pub response: Response,
    /// request ‖ response-without-signature: what the signature covers.
    signed: Vec<u8>,
    /// Trailing bytes that were tolerated (0 or 1).
    pub ignored_trailing: usize,
}

impl Report {
    /// The bytes the GPU signed (SPDM 1.1's L1/L2: request ‖ response
    /// without its signature).
    pub fn signed_bytes(&self) -> &[u8] {
        &self.signed
    }

    pub fn block(&self, index: u8) -> Option<&MeasurementBlock> {
        self.response.blocks.iter().find(|b| b.index == index)
    }
}

/// A bounds-checked cursor: every read says which field it was for, so a
/// truncated report names the field it ran out in.
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], SpdmError> {
        let available = self.bytes.len() - self.offset;
        if n > available {
            return Err(SpdmError::Truncated {
                field,
                offset: self.offset,
                needed: n,
                available,
            });
        }
        let out = &self.bytes[self.offset..self.offset + n];
        self.offset += n;
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, SpdmError> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, SpdmError> {
        let b = self.take(2, field)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u24(&mut self, field: &'static str) -> Result<usize, SpdmError> {
        let b = self.take(3, field)?;
        Ok(usize::from(b[0]) | usize::from(b[1]) << 8 | usize::from(b[2]) << 16)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], SpdmError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.offset
    }
}

/// Parse request ‖ response ‖ signature (‖ a tolerated trailing byte).
pub fn parse_report(bytes: &[u8], trailing: Trailing) -> Result<Report, SpdmError> {
    if bytes.len() > MAX_REPORT_LEN {
        return Err(SpdmError::TooLarge {
            len: bytes.len(),
            max: MAX_REPORT_LEN,
        });
    }
    let mut r = Reader { bytes, offset: 0 };
    let request = parse_request(&mut r)?;
    let response_start = r.offset;
    let response = parse_response(&mut r, request.slot)?;
    let signed_end = r.offset - SIGNATURE_LEN;
    debug_assert!(signed_end >= response_start);
    let ignored_trailing = match (r.remaining(), trailing) {
        (0, _) => 0,
        (1, Trailing::AllowOneZeroByte) if bytes[r.offset] == 0 => 1,
        (count, _) => return Err(SpdmError::TrailingBytes { count }),
    };
    Ok(Report {
        request,
        response,
        signed: bytes[..signed_end].to_vec(),
        ignored_trailing,
    })
}

fn parse_request(r: &mut Reader<'_>) -> Result<Request, SpdmError> {
    let version = r.u8("request SPDMVersion")?;
    if version != SPDM_VERSION_1_1 {
        return Err(SpdmError::RequestVersion(version));
    }
    let code = r.u8("request RequestResponseCode")?;
    if code != GET_MEASUREMENTS {
        return Err(SpdmError::RequestCode(code));
    }
    // Param1's other bits are reserved in 1.1: anything but 0x01 is not a
    // request we made.
    let param1 = r.u8("request Param1")?;
    if param1 != SIGNATURE_REQUESTED {
        return Err(SpdmError::SignatureNotRequested(param1));
    }
    let param2 = r.u8("request Param2")?;
    if param2 != ALL_MEASUREMENTS {
        return Err(SpdmError::NotAllMeasurements(param2));
    }
    let nonce = r.array::<NONCE_LEN>("request Nonce")?;
    let slot = r.u8("request SlotIDParam")?;
    if slot > MAX_SLOT {
        return Err(SpdmError::RequestSlot(slot));
    }
    Ok(Request { nonce, slot })
}

fn parse_response(r: &mut Reader<'_>, request_slot: u8) -> Result<Response, SpdmError> {
    let version = r.u8("response SPDMVersion")?;
    if version != SPDM_VERSION_1_1 {
        return Err(SpdmError::ResponseVersion(version));
    }
    let code = r.u8("response RequestResponseCode")?;
    if code != MEASUREMENTS {
        return Err(SpdmError::ResponseCode(code));
    }
    // Param1 is reserved when all blocks are requested; Param2 bits 3:0
    // carry the slot the signing key belongs to.
    let _param1 = r.u8("response Param1")?;
    let slot = r.u8("response Param2")? & 0x0F;
    if slot != request_slot {
        return Err(SpdmError::SlotMismatch {
            request: request_slot,
            response: slot,
        });
    }
    let declared = usize::from(r.u8("response NumberOfBlocks")?);
    if declared == 0 {
        return Err(SpdmError::NoBlocks);
    }
    let record_len = r.u24("response MeasurementRecordLength")?;
    let record = r.take(record_len, "response MeasurementRecord")?;
    let blocks = parse_record(record, declared)?;
    let nonce = r.array::<NONCE_LEN>("response Nonce")?;
    let opaque_len = usize::from(r.u16("response OpaqueLength")?);
    if opaque_len > MAX_OPAQUE_LEN {
        return Err(SpdmError::OpaqueTooLong(opaque_len));
    }
    let opaque = OpaqueData::parse(r.take(opaque_len, "response OpaqueData")?)?;
    let signature = r.array::<SIGNATURE_LEN>("response Signature")?;
    Ok(Response {
        slot,
        blocks,
        nonce,
        opaque,
        signature,
    })
}

/// The measurement record: exactly `declared` blocks filling it exactly.
fn parse_record(record: &[u8], declared: usize) -> Result<Vec<MeasurementBlock>, SpdmError> {
    let mut r = Reader {
        bytes: record,
        offset: 0,
    };
    // `declared` is at most 255, so this allocation is bounded.
    let mut blocks: Vec<MeasurementBlock> = Vec::with_capacity(declared);
    for position in 0..declared {
        let index = r.u8("measurement block Index")?;
        if index == 0 || index == 0xFF {
            return Err(SpdmError::ReservedIndex { position, index });
        }
        if blocks.iter().any(|b| b.index == index) {
            return Err(SpdmError::DuplicateIndex(index));
        }
        let spec = r.u8("measurement block MeasurementSpecification")?;
        if spec != DMTF_SPECIFICATION {
            return Err(SpdmError::NotDmtf { index, spec });
        }
        let size = usize::from(r.u16("measurement block MeasurementSize")?);
        let mut m = Reader {
            bytes: r.take(size, "measurement block Measurement")?,
            offset: 0,
        };
        let value_type = m.u8("DMTFSpecMeasurementValueType")?;
        let value_len = usize::from(m.u16("DMTFSpecMeasurementValueSize")?);
        if 3 + value_len != size {
            return Err(SpdmError::BlockSize {
                index,
                declared: size,
                actual: 3 + value_len,
            });
        }
        let value = m.take(value_len, "DMTFSpecMeasurementValue")?.to_vec();
        blocks.push(MeasurementBlock {
            index,
            value_type: value_type & 0x7F,
            raw: value_type & 0x80 != 0,
            value,
        });
    }
    if r.remaining() != 0 {
        return Err(SpdmError::RecordLongerThanBlocks {
            declared,
            parsed: blocks.len(),
        });
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u24_is_little_endian() {
        let mut r = Reader {
            bytes: &[0xc0, 0x0d, 0x00],
            offset: 0,
        };
        assert_eq!(r.u24("x").unwrap(), 0x0dc0);
    }

    #[test]
    fn empty_input_names_the_first_field() {
        let err = parse_report(&[], Trailing::Reject).unwrap_err();
        assert!(matches!(
            err,
            SpdmError::Truncated {
                field: "request SPDMVersion",
                ..
            }
        ));
    }
}
