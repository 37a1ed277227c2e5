//! Any bytes: decoding a shard never panics, and an upload-form shard re-encodes to a shard
//! that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_xet::format::Shard;

fuzz_target!(|data: &[u8]| {
    let Ok(shard) = Shard::decode(data) else { return };
    if shard.footer.is_none() {
        let again = shard.encode_upload().ok().and_then(|bytes| Shard::decode(&bytes).ok());
        assert_eq!(again.as_ref(), Some(&shard));
    }
});
