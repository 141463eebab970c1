-- Namespace tags (Cloud Ops `Namespace.tags`, changed by UpdateNamespaceTags) and the custom search attributes
-- registered on the namespace on the Temporal server (`NamespaceSpec.search_attributes`), each as
-- {"<key or name>": "<value or type>"}. Search attributes are recorded by the workflow once the server has them.
ALTER TABLE namespaces ADD COLUMN tags jsonb NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE namespaces ADD COLUMN search_attributes jsonb NOT NULL DEFAULT '{}'::jsonb;
