// Sends Gemini CLI-shaped events to an OTLP/HTTP endpoint with the OpenTelemetry JavaScript
// SDK's log exporters (what Gemini CLI bundles), with the event names, resource and attribute
// types of shared/reference/other-agents-telemetry.md §3.2–3.3, then exits 0 once they are
// exported. Gemini's own HTTP protocol is JSON; protobuf is sent too, as a collector would.
//   node gemini.mjs BASE_URL http/protobuf|http/json SESSION_ID NOW_MS [STEP_MS]
// (the records are a minute before NOW_MS, the server's clock, STEP_MS apart: 1000 unless set)
import { LoggerProvider, SimpleLogRecordProcessor } from '@opentelemetry/sdk-logs';
import { logExporter, finish } from './exporter.mjs';
import { resourceFromAttributes } from '@opentelemetry/resources';

const [baseUrl, protocol, session, nowMs, stepMs = '1000'] = process.argv.slice(2);
const { exporter, failures } = logExporter(baseUrl, protocol);

const at = (step) => new Date(Number(nowMs) - 60_000 + step * Number(stepMs));

function gemini() {
  const provider = new LoggerProvider({
    // service.version is Node's version; the session is on the resource too.
    resource: resourceFromAttributes({
      'service.name': 'gemini-cli',
      'service.version': 'v22.17.0',
      'session.id': session,
    }),
    processors: [new SimpleLogRecordProcessor({ exporter })],
  });
  const logger = provider.getLogger('gemini-cli');
  const prompt = `${session}########1`;
  const common = (name) => ({
    'event.name': name,
    'session.id': session,
    'installation.id': 'install-gemini',
    'user.email': 'dev@example.com',
    interactive: true,
    auth_type: 'gemini-api-key',
  });
  const emit = (second, name, attributes) =>
    logger.emit({
      timestamp: at(second),
      body: `${name}.`,
      attributes: { ...common(name), 'event.timestamp': at(second).toISOString(), ...attributes },
    });
  emit(0, 'gemini_cli.config', { model: 'gemini-2.5-pro', sandbox_enabled: false });
  emit(1, 'gemini_cli.user_prompt', { prompt_id: prompt, prompt_length: 21, prompt: 'list the files please' });
  emit(2, 'gemini_cli.api_request', { model: 'gemini-2.5-pro', prompt_id: prompt, role: 'main' });
  emit(4, 'gemini_cli.api_response', {
    model: 'gemini-2.5-pro',
    prompt_id: prompt,
    role: 'main',
    duration_ms: 2100,
    status_code: 200,
    input_token_count: 10000,
    output_token_count: 300,
    cached_content_token_count: 6000,
    thoughts_token_count: 200,
    tool_token_count: 50,
    total_token_count: 10550,
    finish_reasons: ['STOP'],
  });
  // The GenAI twin of the same response: never a second request.
  emit(4, 'gen_ai.client.inference.operation.details', {
    'gen_ai.request.model': 'gemini-2.5-pro',
    'gen_ai.usage.input_tokens': 10000,
    'gen_ai.usage.output_tokens': 300,
  });
  emit(5, 'gemini_cli.tool_call', {
    prompt_id: prompt,
    function_name: 'run_shell_command',
    duration_ms: 40,
    success: true,
    decision: 'auto_accept',
    tool_type: 'native',
  });
  emit(6, 'gemini_cli.api_error', {
    model: 'gemini-2.5-flash',
    prompt_id: prompt,
    'error.message': 'Resource exhausted',
    status_code: 429,
    duration_ms: 90,
    role: 'subagent',
  });
  return provider;
}

const provider = gemini();
await finish(provider, failures);
