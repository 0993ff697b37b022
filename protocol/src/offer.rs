//! Settlement offers: structured items a party (or the mediator for it)
//! records in its private room, and that the mediator carries across like
//! any forward.
//!
//! An [`Offer`] names a sum of money (an [`Amount`]: integer minor units, a
//! currency code and its number of decimal places; never a float) or
//! non-financial terms in words, or both, with its conditions. A counter-offer
//! names the offer it answers by the envelope hash of the carried offer the
//! party received. A [`CarriedOffer`] is the mediator's copy in another
//! room, verbatim or restated.
//!
//! ```
//! use caucus_protocol::offer::{Amount, Offer, OfferKind};
//!
//! let offer = Offer {
//!     kind: OfferKind::Offer,
//!     amount: Some(Amount::parse("GBP", "250000.00")?),
//!     terms: "A written apology from the trust".into(),
//!     conditions: vec!["Each side bears its own costs".into()],
//!     responds_to: None,
//! };
//! assert_eq!(offer.amount.unwrap().to_string(), "GBP 250000.00");
//! # Ok::<(), caucus_protocol::Error>(())
//! ```

use std::fmt;

use crate::codec::{Canonical, DecodeError, Reader, Writer};
use crate::content::ForwardMode;
use crate::crypto::Digest;
use crate::error::Error;
use crate::ids::RoomId;

/// Whether an offer opens or answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfferKind {
    /// A first offer.
    Offer,
    /// An answer to an offer received.
    CounterOffer,
}

/// A sum of money: `minor` units of `currency`, with `exponent` decimal
/// places (GBP 250000.00 is `minor` 25000000, exponent 2).
///
/// The currency is an ISO 4217 code with a minor unit, and the exponent is
/// at most that currency's number of decimal places (2 for GBP, 0 for JPY,
/// 3 for KWD): [`Amount::validate`] is the rule, and decoding applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount {
    /// The sum in minor units (pence, cents).
    pub minor: u64,
    /// An ISO 4217 code: three ASCII capital letters.
    pub currency: [u8; 3],
    /// Decimal places, at most the currency's; [`Amount::parse`] always
    /// gives exactly the currency's.
    pub exponent: u8,
}

/// Why an amount does not fit its currency, in words for the person who
/// typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AmountError {
    /// The value is not digits with an optional decimal point.
    #[error(
        "an amount is written in digits with an optional decimal point, such as 250000 or 250000.00 (no spaces, commas or signs)"
    )]
    NotANumber,
    /// The value is more than 2^64 − 1 minor units.
    #[error("the amount is too large")]
    TooLarge,
    /// A currency code written in small letters; this holds it in capitals.
    #[error("write the currency code in capital letters: {0}")]
    NotCapitals(String),
    /// Not an ISO 4217 currency code.
    #[error("{0} is not a currency code (use an ISO 4217 code such as GBP, EUR or USD)")]
    UnknownCurrency(String),
    /// An ISO 4217 code with no minor unit: a precious metal, a unit of
    /// account, the testing code or "no currency" (XAU, XDR, XTS, XXX).
    #[error("{0} is not a currency that sums are paid in (use a code such as GBP, EUR or USD)")]
    NoMinorUnit(String),
    /// A code ISO 4217 lists as replaced by another (HRK and BGN by EUR):
    /// still read in offers made before, never typed in a new one.
    #[error("{code} is no longer in use: it was replaced by {by}")]
    Superseded {
        /// The code typed.
        code: String,
        /// The code that replaced it.
        by: String,
    },
    /// More decimal places than the currency has.
    #[error("{currency} amounts have {}", places_in_words(*places))]
    TooManyDecimals {
        /// The currency code.
        currency: String,
        /// The currency's number of decimal places.
        places: u8,
    },
}

fn places_in_words(places: u8) -> String {
    match places {
        0 => "no decimal places".into(),
        1 => "at most 1 decimal place".into(),
        n => format!("at most {n} decimal places"),
    }
}

/// The number of decimal places ISO 4217 gives `code`.
fn decimal_places(code: &str) -> Result<u8, AmountError> {
    let Some(currency) = iso_currency::Currency::from_code(code) else {
        let capitals = code.to_ascii_uppercase();
        return Err(if iso_currency::Currency::from_code(&capitals).is_some() {
            AmountError::NotCapitals(capitals)
        } else {
            AmountError::UnknownCurrency(code.into())
        });
    };
    currency
        .exponent()
        .and_then(|e| u8::try_from(e).ok())
        .ok_or_else(|| AmountError::NoMinorUnit(code.into()))
}

impl Amount {
    /// Parse `"250000.00"` in `currency` (`"GBP"`, an ISO 4217 code in
    /// capitals). The value may have fewer decimal places than the
    /// currency, never more; the result always has the currency's exponent,
    /// so `"250000"` and `"250000.00"` GBP are the same amount.
    ///
    /// A code that ISO 4217 lists as superseded (`HRK`, `BGN`) is refused
    /// here, though [`Amount::validate`] still accepts it in an offer made
    /// before the change.
    pub fn parse(currency: &str, value: &str) -> Result<Self, Error> {
        let places = decimal_places(currency)?;
        if let Some(by) = iso_currency::Currency::from_code(currency)
            .and_then(iso_currency::Currency::is_superseded)
        {
            return Err(AmountError::Superseded {
                code: currency.into(),
                by: by.code().into(),
            }
            .into());
        }
        let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
        if whole.is_empty()
            || (fraction.is_empty() && value.ends_with('.'))
            || !(whole.bytes().chain(fraction.bytes())).all(|b| b.is_ascii_digit())
        {
            return Err(AmountError::NotANumber.into());
        }
        let padding = usize::from(places)
            .checked_sub(fraction.len())
            .ok_or_else(|| AmountError::TooManyDecimals {
                currency: currency.into(),
                places,
            })?;
        let minor = format!("{whole}{fraction}{:0<padding$}", "")
            .parse::<u64>()
            .map_err(|_| AmountError::TooLarge)?;
        Ok(Self {
            minor,
            currency: currency
                .as_bytes()
                .try_into()
                .map_err(|_| AmountError::UnknownCurrency(currency.into()))?,
            exponent: places,
        })
    }

    /// Check the rule every amount follows, made here or received: the
    /// currency is an ISO 4217 code with a minor unit, and the exponent is
    /// at most its number of decimal places.
    pub fn validate(&self) -> Result<(), Error> {
        let places = decimal_places(&String::from_utf8_lossy(&self.currency))?;
        if self.exponent > places {
            return Err(AmountError::TooManyDecimals {
                currency: self.currency().into(),
                places,
            }
            .into());
        }
        Ok(())
    }

    /// The currency code.
    pub fn currency(&self) -> &str {
        std::str::from_utf8(&self.currency).unwrap_or("???")
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scale = 10u64.pow(u32::from(self.exponent));
        let (whole, part) = (self.minor / scale, self.minor % scale);
        write!(f, "{} {whole}", self.currency())?;
        if self.exponent > 0 {
            write!(f, ".{part:0width$}", width = usize::from(self.exponent))?;
        }
        Ok(())
    }
}

/// A settlement offer or counter-offer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Offer {
    /// Offer or counter-offer.
    pub kind: OfferKind,
    /// The sum offered, if any.
    pub amount: Option<Amount>,
    /// Non-financial terms in words (may be empty when there is an amount).
    pub terms: String,
    /// The conditions attached.
    pub conditions: Vec<String>,
    /// For a counter-offer: the envelope hash of the carried offer it answers.
    pub responds_to: Option<Digest>,
}

impl Offer {
    /// Check the rules a decoder also checks: the amount fits its currency
    /// ([`Amount::validate`]), something is offered, and a counter-offer
    /// says what it answers.
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(amount) = &self.amount {
            amount.validate()?;
        }
        if self.amount.is_none() && self.terms.trim().is_empty() {
            return Err(Error::InvalidOffer("an offer names an amount or terms"));
        }
        if self.kind == OfferKind::CounterOffer && self.responds_to.is_none() {
            return Err(Error::InvalidOffer(
                "a counter-offer names the offer it answers",
            ));
        }
        Ok(())
    }

    /// One line for a log or a share receipt.
    pub fn summary(&self) -> String {
        let kind = match self.kind {
            OfferKind::Offer => "Offer",
            OfferKind::CounterOffer => "Counter-offer",
        };
        let mut parts = Vec::new();
        if let Some(a) = &self.amount {
            parts.push(a.to_string());
        }
        if !self.terms.is_empty() {
            parts.push(self.terms.clone());
        }
        let mut out = format!("{kind}: {}", parts.join("; "));
        if !self.conditions.is_empty() {
            out.push_str(&format!(" (conditions: {})", self.conditions.join("; ")));
        }
        out
    }
}

impl Canonical for OfferKind {
    fn encode(&self, w: &mut Writer) {
        w.u8(match self {
            Self::Offer => 1,
            Self::CounterOffer => 2,
        });
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            1 => Ok(Self::Offer),
            2 => Ok(Self::CounterOffer),
            tag => Err(DecodeError::InvalidTag {
                what: "offer kind",
                tag,
            }),
        }
    }
}

impl Canonical for Amount {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.minor).fixed(&self.currency).u8(self.exponent);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let minor = r.u64()?;
        let currency: [u8; 3] = r.array()?;
        let amount = Self {
            minor,
            currency,
            exponent: r.u8()?,
        };
        amount
            .validate()
            .map_err(|_| DecodeError::Invalid("amount"))?;
        Ok(amount)
    }
}

impl Canonical for Offer {
    fn encode(&self, w: &mut Writer) {
        self.kind.encode(w);
        w.option(self.amount.as_ref(), |w, a| a.encode(w));
        w.str(&self.terms);
        w.list(&self.conditions, |w, c| {
            w.str(c);
        });
        w.option(self.responds_to.as_ref(), |w, d| d.encode(w));
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let offer = Self {
            kind: OfferKind::decode(r)?,
            amount: r.option(Amount::decode)?,
            terms: r.string()?,
            conditions: r.list(|r| r.string())?,
            responds_to: r.option(Digest::decode)?,
        };
        offer
            .validate()
            .map_err(|_| DecodeError::Invalid("offer"))?;
        Ok(offer)
    }
}

/// A mediator's copy of an offer in another room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarriedOffer {
    /// The room the offer was made in.
    pub source_room: RoomId,
    /// The envelope hash of the offer there.
    pub source_message: Digest,
    /// Verbatim (the offer exactly as made) or restated by the mediator.
    pub mode: ForwardMode,
    /// The offer as carried.
    pub offer: Offer,
}

impl Canonical for CarriedOffer {
    fn encode(&self, w: &mut Writer) {
        self.source_room.encode(w);
        self.source_message.encode(w);
        self.mode.encode(w);
        self.offer.encode(w);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            source_room: RoomId::decode(r)?,
            source_message: Digest::decode(r)?,
            mode: ForwardMode::decode(r)?,
            offer: Offer::decode(r)?,
        })
    }
}

/// As JSON: `{"minor": 12000000, "currency": "GBP", "exponent": 2, "text":
/// "GBP 120000.00"}`.
impl serde::Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = s.serialize_struct("Amount", 4)?;
        out.serialize_field("minor", &self.minor)?;
        out.serialize_field("currency", self.currency())?;
        out.serialize_field("exponent", &self.exponent)?;
        out.serialize_field("text", &self.to_string())?;
        out.end()
    }
}
