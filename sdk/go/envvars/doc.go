// Environment-variable collections as infrastructure, with real diff and replace semantics: Vers, Hoody, Sevalla, Vertra, Phala.
package envvars
