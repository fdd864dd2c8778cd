//! What the server knows of its instruments and assets: symbols, tick and lot sizes, match
//! policies, asset names and scales. Read by every session on every order; written only
//! when an admin lists a new instrument or asset (`POST /v1/admin/instruments`, `/assets`),
//! so a read is one uncontended lock and a reference-count increment.

use crate::script::AssetSpec;
use ringex_engine::{AssetId, InstrumentId, InstrumentSpec, MatchPolicy, Qty};
use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

#[derive(Default)]
struct Table {
    by_symbol: HashMap<String, Arc<InstrumentSpec>>,
    by_id: HashMap<InstrumentId, Arc<InstrumentSpec>>,
    policies: HashMap<InstrumentId, (MatchPolicy, Qty)>,
    assets: Vec<AssetSpec>,
    /// Names of instruments being listed (known before the engine has them).
    listing: HashMap<InstrumentId, String>,
}

/// The instruments and assets, by symbol, id and name (grows while the server runs).
#[derive(Default)]
pub struct Specs {
    table: RwLock<Table>,
}

impl Specs {
    /// From the recovered definitions: instruments, assets, and the instruments with a
    /// pro-rata policy (policy, min_alloc in lots).
    pub fn new(
        specs: &[InstrumentSpec],
        assets: &[AssetSpec],
        policies: impl IntoIterator<Item = (InstrumentId, (MatchPolicy, Qty))>,
    ) -> Self {
        let s = Specs::default();
        for spec in specs {
            s.add_instrument(spec.clone(), None);
        }
        {
            let mut t = s.write();
            t.assets = assets.to_vec();
            t.policies.extend(policies);
        }
        s
    }

    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }

    /// By symbol.
    pub fn by_symbol(&self, s: &str) -> Option<Arc<InstrumentSpec>> {
        self.read().by_symbol.get(s).cloned()
    }

    /// By id.
    pub fn by_id(&self, i: InstrumentId) -> Option<Arc<InstrumentSpec>> {
        self.read().by_id.get(&i).cloned()
    }

    /// The symbol of an instrument (`"?"` for one the server does not know).
    pub fn symbol(&self, i: InstrumentId) -> String {
        self.read()
            .by_id
            .get(&i)
            .map_or_else(|| "?".to_string(), |s| s.symbol.clone())
    }

    /// Every instrument, by id.
    pub fn all(&self) -> Vec<Arc<InstrumentSpec>> {
        let mut v: Vec<_> = self.read().by_id.values().cloned().collect();
        v.sort_by_key(|s| s.id);
        v
    }

    /// How an instrument's levels are shared, and its smallest pro-rata share in lots.
    pub fn policy(&self, i: InstrumentId) -> (MatchPolicy, Qty) {
        self.read()
            .policies
            .get(&i)
            .copied()
            .unwrap_or((MatchPolicy::Fifo, Qty(1)))
    }

    /// Makes an instrument known (with its policy when not FIFO).
    pub fn add_instrument(&self, spec: InstrumentSpec, policy: Option<(MatchPolicy, Qty)>) {
        let mut t = self.write();
        if let Some(p) = policy {
            t.policies.insert(spec.id, p);
        }
        t.listing.remove(&spec.id);
        let spec = Arc::new(spec);
        t.by_symbol.insert(spec.symbol.clone(), Arc::clone(&spec));
        t.by_id.insert(spec.id, spec);
    }

    /// Names an instrument before it is listed, so that a consumer that sees it listed
    /// first can name it ([`Specs::name`]).
    pub fn name_ahead(&self, i: InstrumentId, symbol: &str) {
        self.write().listing.insert(i, symbol.to_string());
    }

    /// The name of a known instrument or of one being listed.
    pub fn name(&self, i: InstrumentId) -> Option<String> {
        let t = self.read();
        t.by_id
            .get(&i)
            .map(|s| s.symbol.clone())
            .or_else(|| t.listing.get(&i).cloned())
    }

    /// Every asset, by id.
    pub fn assets(&self) -> Vec<AssetSpec> {
        self.read().assets.clone()
    }

    /// An asset's name and scale.
    pub fn asset(&self, a: AssetId) -> Option<AssetSpec> {
        self.read().assets.get(a.0 as usize).cloned()
    }

    /// An asset's name (`#N` for one the server does not know).
    pub fn asset_name(&self, a: AssetId) -> String {
        self.asset(a)
            .map_or_else(|| format!("#{}", a.0), |s| s.name)
    }

    /// An asset by name: its id and scale.
    pub fn asset_by_name(&self, name: &str) -> Option<(AssetId, u8)> {
        let t = self.read();
        let pos = t.assets.iter().position(|a| a.name == name)?;
        Some((AssetId(pos as u16), t.assets[pos].scale))
    }

    /// Makes an asset known; it must be the next id.
    pub fn add_asset(&self, id: AssetId, spec: AssetSpec) {
        let mut t = self.write();
        if t.assets.len() == id.0 as usize {
            t.assets.push(spec);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    #[test]
    fn added_instruments_and_assets_are_found_by_every_key() {
        let a =
            InstrumentSpec::new(InstrumentId(0), "A", Decimal::new(1, 2), Decimal::ONE).unwrap();
        let s = Specs::new(
            &[a],
            &[AssetSpec {
                name: "USD".into(),
                scale: 2,
            }],
            [],
        );
        let b = InstrumentSpec::new(InstrumentId(1), "B", Decimal::ONE, Decimal::ONE).unwrap();
        s.add_instrument(b, Some((MatchPolicy::ProRata, Qty(2))));
        s.add_asset(
            AssetId(1),
            AssetSpec {
                name: "BTC".into(),
                scale: 8,
            },
        );
        // Not the next id: ignored.
        s.add_asset(
            AssetId(5),
            AssetSpec {
                name: "X".into(),
                scale: 0,
            },
        );
        assert_eq!(s.by_symbol("B").unwrap().id, InstrumentId(1));
        assert_eq!(s.symbol(InstrumentId(1)), "B");
        assert_eq!(s.symbol(InstrumentId(7)), "?");
        assert_eq!(s.policy(InstrumentId(1)), (MatchPolicy::ProRata, Qty(2)));
        assert_eq!(s.policy(InstrumentId(0)), (MatchPolicy::Fifo, Qty(1)));
        assert_eq!(
            s.all()
                .iter()
                .map(|x| x.symbol.as_str())
                .collect::<Vec<_>>(),
            ["A", "B"]
        );
        assert_eq!(s.asset_by_name("BTC"), Some((AssetId(1), 8)));
        assert_eq!(s.asset_name(AssetId(0)), "USD");
        assert_eq!(s.asset_name(AssetId(5)), "#5");
        assert_eq!(s.assets().len(), 2);
    }
}
