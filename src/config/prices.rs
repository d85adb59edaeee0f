//! Device prices in USD per second of device time. The defaults are what the
//! replaced system paid, so reelay's cost figures compare like for like.

use std::collections::BTreeMap;

pub type PriceTable = BTreeMap<String, f64>;

pub fn default_prices() -> PriceTable {
    [
        ("t4", 0.000164),
        ("l4", 0.000222),
        ("a10g", 0.000306),
        ("cpu", 0.0000262),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The price entry for a device name such as `cpu` or `cuda:Tesla T4`: the
/// longest table key found in the GPU's name, or `cpu` for the CPU.
pub fn price_for<'a>(prices: &'a PriceTable, device: &str) -> Option<(&'a str, f64)> {
    let device = device.to_ascii_lowercase();
    if device == "cpu" {
        return prices.get_key_value("cpu").map(|(k, v)| (k.as_str(), *v));
    }
    let gpu = device.strip_prefix("cuda:").unwrap_or(&device);
    let words: Vec<&str> = gpu.split(|c: char| !c.is_ascii_alphanumeric()).collect();
    prices
        .iter()
        .filter(|(k, _)| k.as_str() != "cpu" && words.contains(&k.as_str()))
        .max_by_key(|(k, _)| k.len())
        .map(|(k, v)| (k.as_str(), *v))
}

/// USD for `millis` of device time.
pub fn cost_usd(prices: &PriceTable, device: &str, millis: u64) -> Option<f64> {
    price_for(prices, device).map(|(_, per_second)| per_second * millis as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_names_match_their_table_entry() {
        let p = default_prices();
        assert_eq!(price_for(&p, "cuda:Tesla T4").unwrap().0, "t4");
        assert_eq!(price_for(&p, "cuda:NVIDIA L4").unwrap().0, "l4");
        assert_eq!(price_for(&p, "cuda:NVIDIA A10G").unwrap().0, "a10g");
        assert_eq!(price_for(&p, "cpu").unwrap().0, "cpu");
        assert!(price_for(&p, "cuda:NVIDIA H100 80GB HBM3").is_none());
        let c = cost_usd(&p, "cpu", 10_000).unwrap();
        assert!((c - 0.000262).abs() < 1e-12);
    }
}
