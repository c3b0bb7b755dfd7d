// ESLint for the page's browser code: mmchat/web/static/*.js are plain scripts that the page
// loads in its <head> (no modules, no bundler), so browser globals and sourceType "script".
// tests/test_structure.py runs it; so does `npx eslint mmchat/web/static`.
import js from "@eslint/js";
import globals from "globals";

export default [
  {ignores: ["node_modules/", ".venv/", "tests/.fixture-cache/"]},
  js.configs.recommended,
  {
    files: ["**/*.js"],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "script",
      globals: {...globals.browser},
    },
    linterOptions: {reportUnusedDisableDirectives: "error"},
    rules: {
      // Page scripts share one global scope: a stray top-level name or assignment leaks into it.
      "no-implicit-globals": "error",
      "no-unused-vars": ["error", {args: "after-used", caughtErrors: "none"}],
      "eqeqeq": ["error", "smart"],
      "no-var": "error",
      "prefer-const": "error",
    },
  },
  {
    // Node-side tooling, should any appear (this file itself is ESM).
    files: ["**/*.mjs"],
    languageOptions: {sourceType: "module", globals: {...globals.node}},
  },
];
