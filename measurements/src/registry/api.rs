//! A client of the TON HTTP API v2 (toncenter's shape): `sendBoc`,
//! `runGetMethod`, `getAddressInformation`. Transient failures (network
//! errors, HTTP 429, 502, 503, 504) are retried with backoff; everything
//! else is an error that names the endpoint, the method and the answer.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use num_bigint::BigInt;
use serde_json::{Value, json};
use tonlib_core::TonAddress;
use tonlib_core::cell::{ArcCell, BagOfCells, Cell};
use tonlib_core::tlb_types::tlb::TLB;

use super::RegistryError;

/// Where the API is: the public endpoints or any URL of the same shape
/// (a local devnet, a self-hosted toncenter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    Testnet,
    Mainnet,
    Url(String),
}

impl Network {
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        match text {
            "testnet" => Ok(Self::Testnet),
            "mainnet" => Ok(Self::Mainnet),
            url if url.starts_with("http://") || url.starts_with("https://") => {
                Ok(Self::Url(url.trim_end_matches('/').to_string()))
            }
            other => Err(RegistryError::Invalid(format!(
                "network `{other}`: expected testnet, mainnet or an http(s):// URL of a TON HTTP API v2"
            ))),
        }
    }

    pub fn endpoint(&self) -> &str {
        match self {
            Self::Testnet => "https://testnet.toncenter.com/api/v2",
            Self::Mainnet => "https://toncenter.com/api/v2",
            Self::Url(u) => u,
        }
    }

    pub fn is_testnet(&self) -> bool {
        matches!(self, Self::Testnet)
    }
}

/// One value of a get method's result stack.
#[derive(Debug, Clone, PartialEq)]
pub enum StackValue {
    Int(BigInt),
    Cell(ArcCell),
}

impl StackValue {
    pub fn int(&self) -> Option<&BigInt> {
        match self {
            Self::Int(i) => Some(i),
            Self::Cell(_) => None,
        }
    }
}

/// The state of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    /// nanoton.
    pub balance: u128,
    /// `active`, `uninitialized` or `frozen`.
    pub state: String,
    /// The hash of the account's code, when it has code.
    pub code_hash: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TonApi {
    endpoint: String,
    api_key: Option<String>,
    agent: ureq::Agent,
    retries: u32,
    backoff: Duration,
}

impl TonApi {
    pub fn new(network: &Network, api_key: Option<String>) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into();
        Self {
            endpoint: network.endpoint().to_string(),
            api_key: api_key.filter(|k| !k.is_empty()),
            agent,
            retries: 5,
            backoff: Duration::from_millis(500),
        }
    }

    /// How often a transient failure is retried, and the first wait (it
    /// doubles each time).
    pub fn with_retries(mut self, retries: u32, backoff: Duration) -> Self {
        self.retries = retries;
        self.backoff = backoff;
        self
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn error(&self, method: &str, message: impl Into<String>) -> RegistryError {
        RegistryError::Api {
            endpoint: self.endpoint.clone(),
            method: method.to_string(),
            message: message.into(),
        }
    }

    /// One call; `body` None is a GET with `query`.
    fn call(
        &self,
        method: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, RegistryError> {
        let url = format!("{}/{method}", self.endpoint);
        let mut wait = self.backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match body {
                Some(b) => {
                    let mut req = self.agent.post(&url);
                    if let Some(k) = &self.api_key {
                        req = req.header("X-API-Key", k);
                    }
                    req.send_json(b)
                }
                None => {
                    let mut req = self.agent.get(&url);
                    if let Some(k) = &self.api_key {
                        req = req.header("X-API-Key", k);
                    }
                    for (k, v) in query {
                        req = req.query(*k, v);
                    }
                    req.call()
                }
            };
            let transient = match result {
                Err(e) => format!("request failed: {e}"),
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let text = resp
                        .body_mut()
                        .with_config()
                        .limit(16 << 20)
                        .read_to_string()
                        .unwrap_or_default();
                    if matches!(status, 429 | 502 | 503 | 504) {
                        format!("HTTP {status}: {}", snippet(&text))
                    } else {
                        return self.answer(method, status, &text);
                    }
                }
            };
            if attempt > self.retries {
                return Err(self.error(
                    method,
                    format!("{transient} (gave up after {attempt} attempts)"),
                ));
            }
            std::thread::sleep(wait);
            wait = wait.saturating_mul(2);
        }
    }

    /// The `result` of a v2 answer `{"ok": true, "result": ...}`.
    fn answer(&self, method: &str, status: u16, text: &str) -> Result<Value, RegistryError> {
        let v: Value = serde_json::from_str(text).map_err(|_| {
            let hint = if status == 401 || status == 403 {
                " (check the API key)"
            } else {
                ""
            };
            self.error(method, format!("HTTP {status}{hint}: {}", snippet(text)))
        })?;
        if v.get("ok") == Some(&Value::Bool(true)) {
            return v
                .get("result")
                .cloned()
                .ok_or_else(|| self.error(method, "answer has no `result`"));
        }
        let message = v
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no error message")
            .to_string();
        Err(self.error(method, format!("HTTP {status}: {message}")))
    }

    /// Sends a serialized external message.
    pub fn send_boc(&self, message: &Cell) -> Result<(), RegistryError> {
        let boc = message.to_boc_b64(false)?;
        self.call("sendBoc", &[], Some(&json!({ "boc": boc })))?;
        Ok(())
    }

    pub fn address_information(&self, address: &TonAddress) -> Result<AccountInfo, RegistryError> {
        let m = "getAddressInformation";
        let r = self.call(m, &[("address", address.to_base64_url())], None)?;
        let balance = match r.get("balance") {
            Some(Value::String(s)) => s.parse().ok(),
            Some(Value::Number(n)) => n.as_u64().map(u128::from),
            _ => None,
        }
        .ok_or_else(|| self.error(m, "answer has no numeric `balance`"))?;
        let state = r
            .get("state")
            .and_then(Value::as_str)
            .ok_or_else(|| self.error(m, "answer has no `state`"))?
            .to_string();
        let code_hash = match r.get("code").and_then(Value::as_str) {
            None | Some("") => None,
            Some(b64) => Some(
                BagOfCells::parse_base64(b64)
                    .and_then(BagOfCells::single_root)
                    .map(|c| Cell::cell_hash(&c).to_hex())
                    .map_err(|e| {
                        self.error(m, format!("the account's code does not parse: {e}"))
                    })?,
            ),
        };
        Ok(AccountInfo {
            balance,
            state,
            code_hash,
        })
    }

    /// Runs a get method with integer arguments; a non-zero exit code is an error.
    pub fn run_get_method(
        &self,
        address: &TonAddress,
        method: &str,
        args: &[BigInt],
    ) -> Result<Vec<StackValue>, RegistryError> {
        let stack: Vec<Value> = args.iter().map(|a| json!(["num", hex_int(a)])).collect();
        let body = json!({ "address": address.to_base64_url(), "method": method, "stack": stack });
        let r = self.call("runGetMethod", &[], Some(&body))?;
        let exit_code = r.get("exit_code").and_then(Value::as_i64).unwrap_or(-1);
        if exit_code != 0 {
            return Err(RegistryError::GetMethod {
                address: address.to_base64_url(),
                method: method.to_string(),
                exit_code,
                hint: if exit_code == -13 || exit_code == -256 {
                    " (no contract at that address, or not the registry)"
                } else {
                    ""
                },
            });
        }
        let stack = r
            .get("stack")
            .and_then(Value::as_array)
            .ok_or_else(|| self.error("runGetMethod", "answer has no `stack`"))?;
        stack
            .iter()
            .map(|e| parse_stack_entry(e).map_err(|m| self.error("runGetMethod", m)))
            .collect()
    }
}

fn snippet(text: &str) -> String {
    let t = text.trim();
    if t.len() > 300 {
        format!("{}...", &t[..t.floor_char_boundary(300)])
    } else {
        t.to_string()
    }
}

/// `0x..` or `-0x..`, as the v2 API takes and gives numbers.
fn hex_int(i: &BigInt) -> String {
    let (sign, mag) = (i.sign(), i.magnitude());
    let minus = if sign == num_bigint::Sign::Minus {
        "-"
    } else {
        ""
    };
    format!("{minus}0x{}", mag.to_str_radix(16))
}

fn parse_int(text: &str) -> Option<BigInt> {
    let (neg, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let mag = match rest.strip_prefix("0x") {
        Some(h) => BigInt::parse_bytes(h.as_bytes(), 16)?,
        None => BigInt::parse_bytes(rest.as_bytes(), 10)?,
    };
    Some(if neg { -mag } else { mag })
}

/// `["num", "0x1"]` or `["cell", {"bytes": "<base64 BOC>"}]`.
fn parse_stack_entry(e: &Value) -> Result<StackValue, String> {
    let pair = e.as_array().filter(|a| a.len() == 2);
    let (kind, value) = match pair {
        Some(a) => (a[0].as_str().unwrap_or(""), &a[1]),
        None => return Err(format!("stack entry {e} is not [type, value]")),
    };
    match kind {
        "num" => value
            .as_str()
            .and_then(parse_int)
            .map(StackValue::Int)
            .ok_or_else(|| format!("stack number {value} does not parse")),
        "cell" | "tvm.Cell" => {
            let b64 = value
                .get("bytes")
                .and_then(Value::as_str)
                .or_else(|| value.as_str())
                .ok_or_else(|| format!("stack cell {value} has no `bytes`"))?;
            BagOfCells::parse_base64(b64)
                .and_then(BagOfCells::single_root)
                .map(StackValue::Cell)
                .map_err(|e| format!("stack cell does not parse: {e}"))
        }
        other => Err(format!(
            "stack entry type `{other}` is not used by the registry"
        )),
    }
}

/// The base64 BOC of a cell (what `--dry-run` prints and `sendBoc` takes).
pub fn boc_base64(cell: &Cell) -> Result<String, RegistryError> {
    let boc = cell.to_boc(false)?;
    Ok(BASE64.encode(boc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_in_the_v2_format() {
        for n in ["0", "1", "-1", "340282366920938463463374607431768211455"] {
            let i: BigInt = n.parse().unwrap();
            assert_eq!(parse_int(&hex_int(&i)), Some(i));
        }
        assert_eq!(parse_int("-0x80"), Some(BigInt::from(-128)));
        assert_eq!(parse_int("42"), Some(BigInt::from(42)));
        assert_eq!(parse_int("0xzz"), None);
    }

    #[test]
    fn stack_entries_parse_or_say_why_not() {
        let n = parse_stack_entry(&json!(["num", "0x10"])).unwrap();
        assert_eq!(n, StackValue::Int(BigInt::from(16)));
        let empty_cell = "te6cckEBAQEAAgAAAEysuc0=";
        let c = parse_stack_entry(&json!(["cell", {"bytes": empty_cell}])).unwrap();
        assert!(matches!(c, StackValue::Cell(_)));
        assert!(parse_stack_entry(&json!(["list", []])).is_err());
        assert!(parse_stack_entry(&json!("num")).is_err());
    }

    #[test]
    fn networks_parse() {
        assert_eq!(Network::parse("testnet").unwrap(), Network::Testnet);
        assert_eq!(
            Network::parse("http://127.0.0.1:1/api/v2/")
                .unwrap()
                .endpoint(),
            "http://127.0.0.1:1/api/v2"
        );
        assert!(Network::parse("tetsnet").is_err());
    }

    #[test]
    fn an_unreachable_endpoint_is_retried_then_named() {
        // Port 9 on localhost: connection refused at once.
        let api = TonApi::new(&Network::Url("http://127.0.0.1:9".into()), None)
            .with_retries(2, Duration::from_millis(1));
        let e = api
            .address_information(&TonAddress::NULL)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("http://127.0.0.1:9") && e.contains("3 attempts"),
            "{e}"
        );
    }
}
