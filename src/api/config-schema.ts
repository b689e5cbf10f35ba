/**
 * The configuration schema of a destination plugin or a source connector as the API shows it:
 * JSON Schema of what is sent (defaults optional), secret fields write-only.
 */
import { z } from '@hono/zod-openapi';

/**
 * The JSON Schema of a plugin's or connector's `config`; fields marked `secret()` become
 * `writeOnly` (strings also `format: password`).
 *
 * @example
 * configJsonSchema(plugin.config); // { type: 'object', properties: { apiKey: { type: 'string', writeOnly: true, format: 'password' } }, … }
 */
export function configJsonSchema(config: z.ZodType): Record<string, unknown> {
  const schema = z.toJSONSchema(config, {
    io: 'input',
    unrepresentable: 'any',
    override: ({ jsonSchema }) => {
      const node = jsonSchema as Record<string, unknown>;
      // secret() marks a field with this metadata key (src/sdk/destination.ts).
      if (node['audiencehub.secret'] === true) {
        delete node['audiencehub.secret'];
        node.writeOnly = true;
        // `format` only speaks of strings; a secret map (of headers, say) is write-only only.
        if (node.type === 'string') node.format = 'password';
      }
    },
  }) as Record<string, unknown>;
  delete schema.$schema;
  return schema;
}

/**
 * A JSON response for a route definition.
 *
 * @example
 * responses: { 200: jsonResponse(Source, 'The source') }
 */
export const jsonResponse = <T extends z.ZodType>(schema: T, description: string) => ({
  description,
  content: { 'application/json': { schema } },
});
