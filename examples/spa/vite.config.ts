import { defineConfig } from "vite";

// The generated client's types live in clients/typescript/generated (type-only imports,
// erased at build).
export default defineConfig({
  build: { outDir: "dist", emptyOutDir: true, target: "es2022" },
  server: { fs: { allow: ["../.."] } },
});
