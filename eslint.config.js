// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'data/', 'src/db/migrations/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
    rules: {
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    // Connectors and plugins see the hub only through its SDK. Their tests may also drive the
    // real engine and the test emulators.
    files: ['plugins/**/*.ts', 'connectors/**/*.ts'],
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              // A package's own build folder is not the hub's src (googleapis' one-API entry points).
              group: ['**/src/**', '!audiencehub/sdk', '!googleapis/build/src/**'],
              message: 'Plugins and connectors import only audiencehub/sdk and their own files.',
            },
          ],
        },
      ],
    },
  },
);
