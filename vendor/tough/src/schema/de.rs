use crate::schema::decoded::{Decoded, Hex};
use crate::schema::error;
use crate::schema::key::Key;
use serde::{de::Error as _, Deserialize, Deserializer};
use snafu::ensure;
use std::collections::HashMap;
use std::fmt;

/// Validates the key ID for each key during deserialization and fails if any don't match.
pub(super) fn deserialize_keys<'de, D>(
    deserializer: D,
) -> Result<HashMap<Decoded<Hex>, Key>, D::Error>
where
    D: Deserializer<'de>,
{
    // An inner function that does actual key ID validation:
    // * fails if a key ID doesn't match its contents
    // * fails if there is a duplicate key ID
    // If this passes we insert the entry.
    fn validate_and_insert_entry(
        keyid: Decoded<Hex>,
        key: Key,
        map: &mut HashMap<Decoded<Hex>, Key>,
    ) -> Result<(), error::Error> {
        let calculated = key.key_id()?;
        let keyid_hex = hex::encode(&keyid);
        ensure!(
            keyid == calculated,
            error::InvalidKeyIdSnafu {
                keyid: &keyid_hex,
                calculated: hex::encode(&calculated),
            }
        );
        ensure!(
            map.insert(keyid, key).is_none(),
            error::DuplicateKeyIdSnafu { keyid: keyid_hex }
        );
        Ok(())
    }

    // The rest of this is fitting the above function into serde and doing error type conversion.
    struct Visitor;

    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = HashMap<Decoded<Hex>, Key>;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("a map")
        }

        fn visit_map<M>(self, mut access: M) -> Result<Self::Value, M::Error>
        where
            M: serde::de::MapAccess<'de>,
        {
            let mut map = HashMap::new();
            while let Some((keyid, key)) = access.next_entry()? {
                validate_and_insert_entry(keyid, key, &mut map).map_err(M::Error::custom)?;
            }
            Ok(map)
        }
    }

    deserializer.deserialize_map(Visitor)
}

/// Deserializes the `_extra` field on roles, skipping the `_type` tag.
pub(super) fn extra_skip_type<'de, D>(
    deserializer: D,
) -> Result<HashMap<String, serde_json::Value>, D::Error>
where
    D: Deserializer<'de>,
{
    let mut map = HashMap::deserialize(deserializer)?;
    map.remove("_type");
    Ok(map)
}

// (palier patch) `Targets`, `Target` and `Hashes` read field by field. Derived, their
// `#[serde(flatten)]` extra fields (and the `_type` tag of `Targets`) made serde buffer each
// whole object into an intermediate tree before reading it again: every bin's every entry
// was parsed twice. The result is the same: unknown fields go to `_extra` (they are signed),
// a known field given twice or missing is refused, `_type` must be "targets".

struct FieldsOf<T>(std::marker::PhantomData<T>);

fn once<T, E: serde::de::Error>(slot: &mut Option<T>, value: T, field: &'static str) -> Result<(), E> {
    if slot.replace(value).is_some() {
        return Err(E::duplicate_field(field));
    }
    Ok(())
}

impl<'de> serde::de::Visitor<'de> for FieldsOf<crate::schema::Targets> {
    type Value = crate::schema::Targets;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a targets role")
    }
    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let (mut kind, mut spec_version, mut version, mut expires, mut targets, mut delegations) = (None, None, None, None, None, None);
        let mut extra = HashMap::new();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "_type" => once(&mut kind, map.next_value::<String>()?, "_type")?,
                "spec_version" => once(&mut spec_version, map.next_value()?, "spec_version")?,
                "version" => once(&mut version, map.next_value()?, "version")?,
                "expires" => once(&mut expires, map.next_value()?, "expires")?,
                "targets" => once(&mut targets, map.next_value::<TargetsMap>()?.0, "targets")?,
                "delegations" => once(&mut delegations, map.next_value()?, "delegations")?,
                _ => {
                    let value = map.next_value()?;
                    if extra.insert(key, value).is_some() {
                        return Err(M::Error::custom("a field is given twice"));
                    }
                }
            }
        }
        match kind.as_deref() {
            Some("targets") => {}
            Some(other) => return Err(M::Error::unknown_variant(other, &["targets"])),
            None => return Err(M::Error::missing_field("_type")),
        }
        Ok(crate::schema::Targets {
            spec_version: spec_version.ok_or_else(|| M::Error::missing_field("spec_version"))?,
            version: version.ok_or_else(|| M::Error::missing_field("version"))?,
            expires: expires.ok_or_else(|| M::Error::missing_field("expires"))?,
            targets: targets.ok_or_else(|| M::Error::missing_field("targets"))?,
            delegations: delegations.flatten(),
            _extra: extra,
        })
    }
}

impl<'de> Deserialize<'de> for crate::schema::Targets {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsOf::<crate::schema::Targets>(std::marker::PhantomData))
    }
}

impl<'de> serde::de::Visitor<'de> for FieldsOf<crate::schema::Target> {
    type Value = crate::schema::Target;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a target")
    }
    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let (mut length, mut hashes, mut custom) = (None, None, None);
        let mut extra = HashMap::new();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "length" => once(&mut length, map.next_value()?, "length")?,
                "hashes" => once(&mut hashes, map.next_value()?, "hashes")?,
                "custom" => once(&mut custom, map.next_value()?, "custom")?,
                _ => {
                    let value = map.next_value()?;
                    if extra.insert(key, value).is_some() {
                        return Err(M::Error::custom("a field is given twice"));
                    }
                }
            }
        }
        Ok(crate::schema::Target {
            length: length.ok_or_else(|| M::Error::missing_field("length"))?,
            hashes: hashes.ok_or_else(|| M::Error::missing_field("hashes"))?,
            custom: custom.unwrap_or_default(),
            _extra: extra,
        })
    }
}

impl<'de> Deserialize<'de> for crate::schema::Target {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsOf::<crate::schema::Target>(std::marker::PhantomData))
    }
}

impl<'de> serde::de::Visitor<'de> for FieldsOf<crate::schema::Hashes> {
    type Value = crate::schema::Hashes;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a hashes object")
    }
    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut sha256 = None;
        let mut extra = HashMap::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "sha256" {
                once(&mut sha256, map.next_value::<Decoded<Hex>>()?, "sha256")?;
            } else {
                let value = map.next_value()?;
                if extra.insert(key, value).is_some() {
                    return Err(M::Error::custom("a field is given twice"));
                }
            }
        }
        Ok(crate::schema::Hashes { sha256: sha256.ok_or_else(|| M::Error::missing_field("sha256"))?, _extra: extra })
    }
}

impl<'de> Deserialize<'de> for crate::schema::Hashes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsOf::<crate::schema::Hashes>(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use crate::schema::{Root, Signed};

    #[test]
    fn duplicate_keyid() {
        assert!(serde_json::from_str::<Signed<Root>>(include_str!(
            "../../tests/data/duplicate-keyid/root.json"
        ))
        .is_err());
    }

    /// Ensure that we can deserialize a root.json file that has hex-encoded ECDSA keys. This uses
    /// sigstore's root.json file taken from here:
    /// `<https://sigstore-tuf-root.storage.googleapis.com/2.root.json>`
    #[test]
    fn ecdsa_hex_encoded_keys() {
        assert!(serde_json::from_str::<Signed<Root>>(include_str!(
            "../../tests/data/hex-encoded-ecdsa-sig-keys/root.json"
        ))
        .is_ok());
    }

    /// Ensure that we can deserialize a root.json file that has pem-encoded ECDSA keys. This uses
    /// sigstore's root.json file taken from here:
    /// `<https://github.com/sigstore/sigstore-rs/blob/8a269a3/trust_root/prod/root.json>`
    #[test]
    fn ecdsa_pem_encoded_keys() {
        assert!(serde_json::from_str::<Signed<Root>>(include_str!(
            "../../tests/data/pem-encoded-ecdsa-sig-keys/root.json"
        ))
        .is_ok());
    }
    /// Ensure that we can deserialize a root.json file that has ECDSA keys with new type ecdsa. This uses
    /// sigstore's root.json file taken from here:
    /// `<https://github.com/sigstore/root-signing/blob/d3738d62e92580b5b928d6212c927084ada2bfee/repository/repository/9.root.json>`
    #[test]
    fn ecdsa_new_type_keys() {
        assert!(serde_json::from_str::<Signed<Root>>(include_str!(
            "../../tests/data/ecdsa-new-type-sig-keys/root.json"
        ))
        .is_ok());
    }
}

/// A role's `targets` map, read into a list first and then into a map of exactly its size:
/// read straight into a map, it grew by doubling and every name was hashed again at each
/// growth (about 3 % of an agent's load at 10,000 bundles). The list is kept from one role
/// to the next (a load reads hundreds of bins one after the other). As before, a name given
/// twice keeps its last entry.
struct TargetsMap(HashMap<crate::TargetName, crate::schema::Target>);

thread_local! {
    static ENTRIES: std::cell::RefCell<Vec<(crate::TargetName, crate::schema::Target)>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl<'de> Deserialize<'de> for TargetsMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = TargetsMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of target names to targets")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<TargetsMap, M::Error> {
                // Taken out of the thread's slot while in use, so a nested use starts its own.
                let mut entries = ENTRIES.with(|e| std::mem::take(&mut *e.borrow_mut()));
                entries.clear();
                let read = (|| {
                    while let Some(entry) = map.next_entry::<crate::TargetName, crate::schema::Target>()? {
                        entries.push(entry);
                    }
                    Ok(())
                })();
                let mut targets = HashMap::new();
                if read.is_ok() {
                    targets.reserve(entries.len());
                    targets.extend(entries.drain(..));
                }
                entries.clear();
                // A large role (a legacy top-level targets) does not stay allocated for good.
                entries.shrink_to(256);
                ENTRIES.with(|e| *e.borrow_mut() = entries);
                read.map(|()| TargetsMap(targets))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}
