import { defineConfig } from 'vitest/config';

// Workspace packages resolve to their TypeScript sources through the `@tributary/source`
// export condition: tests and the CLI need no build step.
const conditions = ['@tributary/source'];

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions } },
  test: {
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['packages/*/test/**/*.test.ts', 'examples/*/test/**/*.test.ts'],
          exclude: ['**/*.integ.test.ts', '**/node_modules/**'],
        },
      },
      {
        extends: true,
        test: {
          name: 'pg',
          globalSetup: ['test/support/global-setup.ts'],
          include: [
            'packages/*/test/**/*.integ.test.ts',
            'examples/*/test/**/*.integ.test.ts',
            'test/**/*.test.ts',
          ],
          exclude: ['**/node_modules/**'],
        },
      },
    ],
  },
});
