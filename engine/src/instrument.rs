//! [`InstrumentSpec`]: tick and lot sizes as decimals, and the conversions between a user's
//! decimal prices and quantities and the engine's ticks and lots.
//!
//! Conversions never round: an off-tick price or an off-lot quantity is rejected.

use crate::event::RejectCode;
use crate::types::{InstrumentId, Price, Qty};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use std::str::FromStr;

/// Why a decimal field could not be converted at the edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeError {
    /// Not a number at all: the line is malformed.
    NotANumber,
    /// A number, but a bad one for this field: the command is rejected with this code.
    Reject(RejectCode),
}

/// The static description of an instrument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstrumentSpec {
    /// The engine's id for it.
    pub id: InstrumentId,
    /// The symbol people use.
    pub symbol: String,
    /// Price increment: every price is a whole number of ticks.
    pub tick_size: Decimal,
    /// Quantity increment: every quantity is a whole number of lots.
    pub lot_size: Decimal,
}

/// Why an instrument spec is invalid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// The tick size must be a positive decimal such as `0.01`.
    #[error("tick size {0} must be positive (e.g. 0.01)")]
    TickSize(Decimal),
    /// The lot size must be a positive decimal such as `1` or `0.001`.
    #[error("lot size {0} must be positive (e.g. 1 or 0.001)")]
    LotSize(Decimal),
    /// Symbols are non-empty and contain no commas or whitespace.
    #[error("symbol {0:?} must be non-empty, without commas or whitespace")]
    Symbol(String),
}

/// Parses a decimal as a person writes it (`100.25`, `-3`, `0.5`). A string of digits that is
/// too large for a `Decimal` is an overflow (`overflow`), not a malformed number; more
/// fractional digits than a `Decimal` holds can be no whole number of ticks or lots
/// (`too_fine`), since that would need rounding.
pub fn parse_decimal(
    s: &str,
    overflow: RejectCode,
    too_fine: RejectCode,
) -> Result<Decimal, EdgeError> {
    let t = s.trim();
    let body = t.strip_prefix(['-', '+']).unwrap_or(t);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let all_digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    if body.is_empty()
        || (int.is_empty() && frac.is_empty())
        || !all_digits(int)
        || !all_digits(frac)
    {
        return Err(EdgeError::NotANumber);
    }
    if frac.trim_end_matches('0').len() > 28 {
        return Err(EdgeError::Reject(too_fine));
    }
    let int_sig = int.trim_start_matches('0').len();
    if int_sig > 28 {
        return Err(EdgeError::Reject(overflow));
    }
    let d = match Decimal::from_str(t) {
        Ok(d) => d,
        // Digits that fit the checks above but still exceed 96 bits.
        Err(_) => return Err(EdgeError::Reject(overflow)),
    };
    // `Decimal::from_str` rounds what its 96-bit mantissa cannot hold (30 significant digits:
    // `10.9999999999999999999999999999` reads as 11). The value must be the one written, or
    // it would be rounded onto the grid; a value that cannot be held exactly is refused, as
    // off the grid (or too large, when its whole part alone has more digits than any
    // quantity of lots or ticks can have).
    if !written_exactly(d, int, frac) {
        let code = if int_sig > 19 { overflow } else { too_fine };
        return Err(EdgeError::Reject(code));
    }
    Ok(d)
}

/// Whether `d` is exactly the decimal whose digits are `int` and `frac` (sign aside).
fn written_exactly(d: Decimal, int: &str, frac: &str) -> bool {
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let m = d.abs().normalize();
    let digits = m.mantissa().unsigned_abs().to_string();
    let scale = m.scale() as usize;
    // `digits` with the point `scale` places from the right, as (whole, fraction).
    let (w, f) = if digits.len() > scale {
        let (w, f) = digits.split_at(digits.len() - scale);
        (w.to_string(), f.to_string())
    } else {
        (
            String::new(),
            format!("{}{digits}", "0".repeat(scale - digits.len())),
        )
    };
    let w = if w == "0" { "" } else { w.as_str() };
    w == int && f == frac
}

impl InstrumentSpec {
    /// A validated spec.
    pub fn new(
        id: InstrumentId,
        symbol: &str,
        tick_size: Decimal,
        lot_size: Decimal,
    ) -> Result<Self, SpecError> {
        if symbol.is_empty() || symbol.contains(|c: char| c == ',' || c.is_whitespace()) {
            return Err(SpecError::Symbol(symbol.to_string()));
        }
        if tick_size <= Decimal::ZERO {
            return Err(SpecError::TickSize(tick_size));
        }
        if lot_size <= Decimal::ZERO {
            return Err(SpecError::LotSize(lot_size));
        }
        Ok(InstrumentSpec {
            id,
            symbol: symbol.to_string(),
            tick_size,
            lot_size,
        })
    }

    /// A decimal price to whole ticks: `OffTick` unless exact, `PriceOverflow` past `i64`.
    pub fn to_ticks(&self, price: Decimal) -> Result<Price, RejectCode> {
        let q = price
            .checked_div(self.tick_size)
            .ok_or(RejectCode::PriceOverflow)?;
        let whole = q.trunc();
        if whole.checked_mul(self.tick_size) != Some(price) {
            return Err(RejectCode::OffTick);
        }
        whole.to_i64().map(Price).ok_or(RejectCode::PriceOverflow)
    }

    /// A decimal quantity to whole lots: `ZeroQty`, `NegativeQty`, `OffLot`, `QtyOverflow`.
    pub fn to_lots(&self, qty: Decimal) -> Result<Qty, RejectCode> {
        if qty.is_sign_negative() && !qty.is_zero() {
            return Err(RejectCode::NegativeQty);
        }
        if qty.is_zero() {
            return Err(RejectCode::ZeroQty);
        }
        let q = qty
            .checked_div(self.lot_size)
            .ok_or(RejectCode::QtyOverflow)?;
        let whole = q.trunc();
        if whole.checked_mul(self.lot_size) != Some(qty) {
            return Err(RejectCode::OffLot);
        }
        whole.to_u64().map(Qty).ok_or(RejectCode::QtyOverflow)
    }

    /// Parses and converts a price string.
    pub fn parse_price(&self, s: &str) -> Result<Price, EdgeError> {
        let d = parse_decimal(s, RejectCode::PriceOverflow, RejectCode::OffTick)?;
        self.to_ticks(d).map_err(EdgeError::Reject)
    }

    /// Parses and converts a quantity string.
    pub fn parse_qty(&self, s: &str) -> Result<Qty, EdgeError> {
        let d = parse_decimal(s, RejectCode::QtyOverflow, RejectCode::OffLot)?;
        self.to_lots(d).map_err(EdgeError::Reject)
    }

    /// Ticks back to a decimal price, normalized (`100.5`, not `100.50`); `None` when the
    /// value has more digits than a `Decimal` holds (a huge tick or price):
    /// [`InstrumentSpec::price_text`] writes every value.
    pub fn price(&self, p: Price) -> Option<Decimal> {
        Decimal::from(p.0)
            .checked_mul(self.tick_size)
            .map(|d| d.normalize())
    }

    /// Lots back to a decimal quantity, normalized; `None` when it does not fit a `Decimal`.
    pub fn qty(&self, q: Qty) -> Option<Decimal> {
        Decimal::from(q.0)
            .checked_mul(self.lot_size)
            .map(|d| d.normalize())
    }

    /// A price as its exact decimal text, normalized, whatever its size.
    pub fn price_text(&self, p: Price) -> String {
        match self.price(p) {
            Some(d) => d.to_string(),
            None => exact_product(p.0 < 0, p.0.unsigned_abs() as u128, self.tick_size),
        }
    }

    /// A quantity of lots (a level's total may pass `u64`) as its exact decimal text.
    pub fn qty_text(&self, q: u128) -> String {
        let fits = Decimal::from_i128_with_scale_checked(q);
        match fits.and_then(|d| d.checked_mul(self.lot_size)) {
            Some(d) => d.normalize().to_string(),
            None => exact_product(false, q, self.lot_size),
        }
    }
}

/// `Decimal::from(q)` for a `q` that fits 96 bits.
trait FromU128 {
    fn from_i128_with_scale_checked(q: u128) -> Option<Decimal>;
}

impl FromU128 for Decimal {
    fn from_i128_with_scale_checked(q: u128) -> Option<Decimal> {
        i128::try_from(q)
            .ok()
            .and_then(|v| Decimal::try_from_i128_with_scale(v, 0).ok())
    }
}

/// `n × unit` written exactly (normalized, `-` when `negative` and not zero), by schoolbook
/// multiplication of the decimal digits: for values a `Decimal` cannot hold.
fn exact_product(negative: bool, n: u128, unit: Decimal) -> String {
    let digits = |x: u128| -> Vec<u32> {
        x.to_string()
            .bytes()
            .rev()
            .map(|b| (b - b'0') as u32)
            .collect()
    };
    let (a, b) = (digits(n), digits(unit.mantissa().unsigned_abs()));
    let mut p = vec![0u32; a.len() + b.len()];
    for (i, x) in a.iter().enumerate() {
        let mut carry = 0;
        for (j, y) in b.iter().enumerate() {
            let t = p[i + j] + x * y + carry;
            p[i + j] = t % 10;
            carry = t / 10;
        }
        let mut k = i + b.len();
        while carry > 0 {
            let t = p[k] + carry;
            p[k] = t % 10;
            carry = t / 10;
            k += 1;
        }
    }
    let scale = unit.scale() as usize;
    while p.len() <= scale {
        p.push(0);
    }
    let (frac, whole) = p.split_at(scale);
    let mut whole: String = whole
        .iter()
        .rev()
        .map(|d| char::from(b'0' + *d as u8))
        .collect();
    let w = whole.trim_start_matches('0').to_string();
    whole = if w.is_empty() { "0".into() } else { w };
    let frac: String = frac
        .iter()
        .rev()
        .map(|d| char::from(b'0' + *d as u8))
        .collect();
    let frac = frac.trim_end_matches('0');
    let zero = whole == "0" && frac.is_empty();
    let sign = if negative && !zero { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    /// Prices and quantities are written exactly whatever their size (a `Decimal` multiply
    /// would panic past 96 bits and halt the consumer that writes them).
    #[test]
    fn display_values_never_overflow() {
        let s = spec("0.01", "1000");
        assert_eq!(s.price_text(Price(10025)), "100.25");
        assert_eq!(s.price_text(Price(-5)), "-0.05");
        assert_eq!(s.qty_text(1500), "1500000");
        // Past a Decimal: a level total of 2^96 lots of 1000, a huge tick times i64::MIN.
        assert_eq!(s.qty_text(1u128 << 96), format!("{}000", 1u128 << 96));
        assert_eq!(s.qty_text(u128::MAX), format!("{}000", u128::MAX));
        let huge = spec(
            "79228162514264337593543950335",
            "0.0000000000000000000000000001",
        );
        assert_eq!(huge.price(Price(2)), None);
        assert_eq!(huge.price_text(Price(2)), "158456325028528675187087900670");
        assert_eq!(
            huge.price_text(Price(i64::MIN)),
            "-730750818665451459101842416348918137791111495680"
        );
        assert_eq!(huge.qty_text(3), "0.0000000000000000000000000003");
        assert_eq!(huge.qty_text(0), "0");
        assert_eq!(
            exact_product(false, 123, Decimal::from_str("0.5").unwrap()),
            "61.5"
        );
    }

    /// A decimal with more digits than a `Decimal` holds is refused, never rounded onto the
    /// grid: `from_str` alone reads `10.9999999999999999999999999999` as 11.
    #[test]
    fn too_many_digits_are_refused_not_rounded() {
        let s = spec("1", "1");
        let nines = "10.9999999999999999999999999999";
        assert_eq!(
            s.parse_qty(nines),
            Err(EdgeError::Reject(RejectCode::OffLot))
        );
        assert_eq!(
            s.parse_price(nines),
            Err(EdgeError::Reject(RejectCode::OffTick))
        );
        let fine = spec("0.01", "0.001");
        assert_eq!(
            fine.parse_price("100.000000000000000000000000001"),
            Err(EdgeError::Reject(RejectCode::OffTick))
        );
        // Exact values with many digits still convert, trailing and leading zeros included.
        assert_eq!(
            fine.parse_price("0100.2500000000000000000000000000"),
            Ok(Price(10025))
        );
        assert_eq!(
            fine.parse_qty("-0.0"),
            Err(EdgeError::Reject(RejectCode::ZeroQty))
        );
        assert_eq!(
            s.parse_qty("1234567890123456789012345678.5"),
            Err(EdgeError::Reject(RejectCode::OffLot))
        );
        assert_eq!(
            s.parse_qty("123456789012345678901234567891.5"),
            Err(EdgeError::Reject(RejectCode::QtyOverflow))
        );
        assert_eq!(
            s.parse_qty("79228162514264337593543950335"),
            Err(EdgeError::Reject(RejectCode::QtyOverflow))
        );
        assert_eq!(s.parse_qty("18446744073709551615"), Ok(Qty(u64::MAX)));
    }

    use super::*;

    fn spec(tick: &str, lot: &str) -> InstrumentSpec {
        InstrumentSpec::new(
            InstrumentId(1),
            "X",
            Decimal::from_str(tick).unwrap(),
            Decimal::from_str(lot).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn prices_convert_exactly_or_are_rejected() {
        let s = spec("0.25", "1");
        assert_eq!(s.parse_price("100.25"), Ok(Price(401)));
        assert_eq!(s.parse_price("-0.5"), Ok(Price(-2)));
        assert_eq!(
            s.parse_price("100.3"),
            Err(EdgeError::Reject(RejectCode::OffTick))
        );
        assert_eq!(s.parse_price("100.250000"), Ok(Price(401)));
        assert_eq!(s.parse_price("abc"), Err(EdgeError::NotANumber));
        assert_eq!(s.parse_price("1e5"), Err(EdgeError::NotANumber));
        assert_eq!(s.parse_price(""), Err(EdgeError::NotANumber));
        assert_eq!(s.parse_price("."), Err(EdgeError::NotANumber));
        // 2^63 ticks of 0.25 does not fit in an i64.
        assert_eq!(
            s.parse_price("2305843009213693952"),
            Err(EdgeError::Reject(RejectCode::PriceOverflow))
        );
        assert_eq!(s.parse_price("2305843009213693951.75"), Ok(Price(i64::MAX)));
        assert_eq!(
            s.parse_price("99999999999999999999999999999999999"),
            Err(EdgeError::Reject(RejectCode::PriceOverflow))
        );
        assert_eq!(
            s.parse_price("1.00000000000000000000000000000001"),
            Err(EdgeError::Reject(RejectCode::OffTick))
        );
    }

    #[test]
    fn quantities_convert_exactly_or_are_rejected() {
        let s = spec("0.01", "0.5");
        assert_eq!(s.parse_qty("2"), Ok(Qty(4)));
        assert_eq!(s.parse_qty("2.5"), Ok(Qty(5)));
        assert_eq!(
            s.parse_qty("0.25"),
            Err(EdgeError::Reject(RejectCode::OffLot))
        );
        assert_eq!(
            s.parse_qty("0"),
            Err(EdgeError::Reject(RejectCode::ZeroQty))
        );
        assert_eq!(
            s.parse_qty("0.000"),
            Err(EdgeError::Reject(RejectCode::ZeroQty))
        );
        assert_eq!(
            s.parse_qty("-1"),
            Err(EdgeError::Reject(RejectCode::NegativeQty))
        );
        assert_eq!(
            s.parse_qty("9223372036854775808"), // 2^63 units = 2^64 lots of 0.5
            Err(EdgeError::Reject(RejectCode::QtyOverflow))
        );
        assert_eq!(s.parse_qty("9223372036854775807.5"), Ok(Qty(u64::MAX)));
    }

    #[test]
    fn decimals_print_normalized() {
        let s = spec("0.01", "0.001");
        assert_eq!(s.price_text(Price(10025)), "100.25");
        assert_eq!(s.price_text(Price(10000)), "100");
        assert_eq!(s.qty(Qty(1500)).map(|d| d.to_string()), Some("1.5".into()));
    }

    #[test]
    fn specs_are_validated() {
        let bad = InstrumentSpec::new(InstrumentId(0), "X", Decimal::ZERO, Decimal::ONE);
        assert_eq!(bad, Err(SpecError::TickSize(Decimal::ZERO)));
        let bad = InstrumentSpec::new(InstrumentId(0), "A,B", Decimal::ONE, Decimal::ONE);
        assert!(matches!(bad, Err(SpecError::Symbol(_))));
    }
}
