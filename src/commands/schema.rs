//! `orch schema`: the JSON Schema of manifests, generated from the raw manifest types.

use crate::manifest::raw::RawManifest;

/// The schema as pretty JSON, exactly as committed in `schemas/orch-manifest.schema.json`.
pub fn manifest_schema() -> String {
    let mut schema = schemars::generate::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<RawManifest>();
    schema.insert("title".into(), "orch manifest".into());
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema is plain JSON");
    text.push('\n');
    text
}
