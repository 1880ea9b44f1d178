// Validates an AsyncAPI document with the AsyncAPI parser (the library `asyncapi validate`
// is built on, with the same Spectral rules): exits 1 on any error or warning.
// Usage: node validate.cjs asyncapi.json
'use strict';
const fs = require('node:fs');
const { Parser, DiagnosticSeverity } = require('@asyncapi/parser');

async function main() {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: node validate.cjs FILE');
    process.exit(2);
  }
  const text = fs.readFileSync(file, 'utf8');
  const { document, diagnostics } = await new Parser().parse(text, { source: file });
  const names = { [DiagnosticSeverity.Error]: 'error', [DiagnosticSeverity.Warning]: 'warning',
    [DiagnosticSeverity.Information]: 'info', [DiagnosticSeverity.Hint]: 'hint' };
  for (const d of diagnostics) {
    console.log(`${names[d.severity]} ${d.code} at ${d.path.join('.') || '(root)'}: ${d.message}`);
  }
  const count = (s) => diagnostics.filter((d) => d.severity === s).length;
  const errors = count(DiagnosticSeverity.Error);
  const warnings = count(DiagnosticSeverity.Warning);
  if (!document || errors > 0 || warnings > 0) {
    console.log(`${file}: ${errors} error(s), ${warnings} warning(s)`);
    process.exit(1);
  }
  const channels = document.channels().length;
  const operations = document.operations().length;
  const messages = document.components().messages().length;
  console.log(`${file}: valid AsyncAPI ${document.version()}: ${channels} channels, ${operations} operations, `
    + `${messages} messages; 0 errors, 0 warnings`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
