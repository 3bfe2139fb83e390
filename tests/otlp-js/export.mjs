// Sends Claude Code-shaped events to an OTLP/HTTP endpoint with the OpenTelemetry JavaScript
// SDK's log exporters (what Claude Code bundles), then exits 0 once they are exported.
//   node export.mjs BASE_URL http/protobuf|http/json SESSION_ID
import { LoggerProvider, SimpleLogRecordProcessor } from '@opentelemetry/sdk-logs';
import { logExporter, finish } from './exporter.mjs';
import { resourceFromAttributes } from '@opentelemetry/resources';

const [baseUrl, protocol, session] = process.argv.slice(2);
const { exporter, failures } = logExporter(baseUrl, protocol);
const provider = new LoggerProvider({
  resource: resourceFromAttributes({ 'service.name': 'claude-code', 'service.version': '2.1.219' }),
  processors: [new SimpleLogRecordProcessor({ exporter })],
});
const logger = provider.getLogger('com.anthropic.claude_code.events', '2.1.219');
const common = (name, sequence) => ({
  'session.id': session,
  'user.email': 'dev@example.com',
  'event.name': name,
  'event.sequence': sequence,
  'prompt.id': 'P-js',
});
logger.emit({
  body: 'claude_code.api_request',
  attributes: {
    ...common('api_request', 1),
    model: 'claude-sonnet-4-6',
    cost_usd: 0.0264174,
    input_tokens: 12,
    output_tokens: 412,
    cache_read_tokens: 48213,
    cache_creation_tokens: 1530,
    duration_ms: 8421,
    request_id: 'req_js',
  },
});
logger.emit({
  body: 'claude_code.tool_result',
  attributes: {
    ...common('tool_result', 2),
    tool_name: 'Bash',
    tool_use_id: 'toolu_js',
    success: 'false',
    duration_ms: '62',
  },
});
await finish(provider, failures);
