// The declarations of https://github.com/anthropics/anthropic-sdk-typescript
// (src/resources/messages/messages.ts, src/resources/shared.ts) that Message, RawMessageStreamEvent, ErrorResponse
// reach, comments dropped; tests/schemas/vendor.py reads them (README.md).

export interface APIErrorObject {
  message: string;
  type: 'api_error';
}

export interface AuthenticationError {
  message: string;
  type: 'authentication_error';
}

export interface Base64PDFSource {
  data: string;
  media_type: 'application/pdf';
  type: 'base64';
}

export interface BashCodeExecutionOutputBlock {
  file_id: string;
  type: 'bash_code_execution_output';
}

export interface BashCodeExecutionResultBlock {
  content: Array<BashCodeExecutionOutputBlock>;
  return_code: number;
  stderr: string;
  stdout: string;
  type: 'bash_code_execution_result';
}

export interface BashCodeExecutionToolResultBlock {
  content: BashCodeExecutionToolResultError | BashCodeExecutionResultBlock;
  tool_use_id: string;
  type: 'bash_code_execution_tool_result';
}

export interface BashCodeExecutionToolResultError {
  error_code: BashCodeExecutionToolResultErrorCode;
  type: 'bash_code_execution_tool_result_error';
}

export type BashCodeExecutionToolResultErrorCode =
  | 'invalid_tool_input'
  | 'unavailable'
  | 'too_many_requests'
  | 'execution_time_exceeded'
  | 'output_file_too_large';

export interface BillingError {
  message: string;
  type: 'billing_error';
}

export interface CacheCreation {
  ephemeral_1h_input_tokens: number;
  ephemeral_5m_input_tokens: number;
}

export interface CitationCharLocation {
  cited_text: string;
  document_index: number;
  document_title: string | null;
  end_char_index: number;
  file_id: string | null;
  start_char_index: number;
  type: 'char_location';
}

export interface CitationContentBlockLocation {
  cited_text: string;
  document_index: number;
  document_title: string | null;
  end_block_index: number;
  file_id: string | null;
  start_block_index: number;
  type: 'content_block_location';
}

export interface CitationPageLocation {
  cited_text: string;
  document_index: number;
  document_title: string | null;
  end_page_number: number;
  file_id: string | null;
  start_page_number: number;
  type: 'page_location';
}

export interface CitationsConfig {
  enabled: boolean;
}

export interface CitationsDelta {
  citation:
    | CitationCharLocation
    | CitationPageLocation
    | CitationContentBlockLocation
    | CitationsWebSearchResultLocation
    | CitationsSearchResultLocation;
  type: 'citations_delta';
}

export interface CitationsSearchResultLocation {
  cited_text: string;
  end_block_index: number;
  search_result_index: number;
  source: string;
  start_block_index: number;
  title: string | null;
  type: 'search_result_location';
}

export interface CitationsWebSearchResultLocation {
  cited_text: string;
  encrypted_index: string;
  title: string | null;
  type: 'web_search_result_location';
  url: string;
}

export interface CodeExecutionOutputBlock {
  file_id: string;
  type: 'code_execution_output';
}

export interface CodeExecutionResultBlock {
  content: Array<CodeExecutionOutputBlock>;
  return_code: number;
  stderr: string;
  stdout: string;
  type: 'code_execution_result';
}

export interface CodeExecutionToolResultBlock {
  content: CodeExecutionToolResultBlockContent;
  tool_use_id: string;
  type: 'code_execution_tool_result';
}

export type CodeExecutionToolResultBlockContent =
  | CodeExecutionToolResultError
  | CodeExecutionResultBlock
  | EncryptedCodeExecutionResultBlock;

export interface CodeExecutionToolResultError {
  error_code: CodeExecutionToolResultErrorCode;
  type: 'code_execution_tool_result_error';
}

export type CodeExecutionToolResultErrorCode =
  | 'invalid_tool_input'
  | 'unavailable'
  | 'too_many_requests'
  | 'execution_time_exceeded';

export interface Container {
  id: string;
  expires_at: string;
  skills: Array<ContainerSkill> | null;
}

export interface ContainerSkill {
  skill_id: string;
  type: 'anthropic' | 'custom';
  version: string;
}

export interface ContainerUploadBlock {
  file_id: string;
  type: 'container_upload';
}

export type ContentBlock =
  | TextBlock
  | ThinkingBlock
  | RedactedThinkingBlock
  | ToolUseBlock
  | ServerToolUseBlock
  | WebSearchToolResultBlock
  | WebFetchToolResultBlock
  | CodeExecutionToolResultBlock
  | BashCodeExecutionToolResultBlock
  | TextEditorCodeExecutionToolResultBlock
  | ToolSearchToolResultBlock
  | ContainerUploadBlock;

export interface DirectCaller {
  type: 'direct';
}

export interface DocumentBlock {
  citations: CitationsConfig | null;
  source: Base64PDFSource | PlainTextSource;
  title: string | null;
  type: 'document';
}

export interface EncryptedCodeExecutionResultBlock {
  content: Array<CodeExecutionOutputBlock>;
  encrypted_stdout: string;
  return_code: number;
  stderr: string;
  type: 'encrypted_code_execution_result';
}

export type ErrorObject =
  | InvalidRequestError
  | AuthenticationError
  | BillingError
  | PermissionError
  | NotFoundError
  | RateLimitError
  | GatewayTimeoutError
  | APIErrorObject
  | OverloadedError;

export interface ErrorResponse {
  error: ErrorObject;
  request_id: string | null;
  type: 'error';
}

export interface GatewayTimeoutError {
  message: string;
  type: 'timeout_error';
}

export interface InputJSONDelta {
  partial_json: string;
  type: 'input_json_delta';
}

export interface InvalidRequestError {
  message: string;
  type: 'invalid_request_error';
}

export interface Message {
  id: string;
  container: Container | null;
  content: Array<ContentBlock>;
  model: Model;
  role: 'assistant';
  stop_details: RefusalStopDetails | null;
  stop_reason: StopReason | null;
  stop_sequence: string | null;
  type: 'message';
  usage: Usage;
}

export interface MessageDeltaUsage {
  cache_creation_input_tokens: number | null;
  cache_read_input_tokens: number | null;
  input_tokens: number | null;
  output_tokens: number;
  output_tokens_details: OutputTokensDetails | null;
  server_tool_use: ServerToolUsage | null;
}

export type Model =
  | 'claude-sonnet-5'
  | 'claude-fable-5'
  | 'claude-mythos-5'
  | 'claude-opus-5'
  | 'claude-opus-4-8'
  | 'claude-opus-4-7'
  | 'claude-mythos-preview'
  | 'claude-opus-4-6'
  | 'claude-sonnet-4-6'
  | 'claude-haiku-4-5'
  | 'claude-haiku-4-5-20251001'
  | 'claude-opus-4-5'
  | 'claude-opus-4-5-20251101'
  | 'claude-sonnet-4-5'
  | 'claude-sonnet-4-5-20250929'
  | (string & {});

export interface NotFoundError {
  message: string;
  type: 'not_found_error';
}

export interface OutputTokensDetails {
  thinking_tokens: number;
}

export interface OverloadedError {
  message: string;
  type: 'overloaded_error';
}

export interface PermissionError {
  message: string;
  type: 'permission_error';
}

export interface PlainTextSource {
  data: string;
  media_type: 'text/plain';
  type: 'text';
}

export interface RateLimitError {
  message: string;
  type: 'rate_limit_error';
}

export type RawContentBlockDelta =
  | TextDelta
  | InputJSONDelta
  | CitationsDelta
  | ThinkingDelta
  | SignatureDelta;

export interface RawContentBlockDeltaEvent {
  delta: RawContentBlockDelta;
  index: number;
  type: 'content_block_delta';
}

export interface RawContentBlockStartEvent {
  content_block:
    | TextBlock
    | ThinkingBlock
    | RedactedThinkingBlock
    | ToolUseBlock
    | ServerToolUseBlock
    | WebSearchToolResultBlock
    | WebFetchToolResultBlock
    | CodeExecutionToolResultBlock
    | BashCodeExecutionToolResultBlock
    | TextEditorCodeExecutionToolResultBlock
    | ToolSearchToolResultBlock
    | ContainerUploadBlock;
  index: number;
  type: 'content_block_start';
}

export interface RawContentBlockStopEvent {
  index: number;
  type: 'content_block_stop';
}

export interface RawMessageDeltaEvent {
  delta: RawMessageDeltaEvent.Delta;
  type: 'message_delta';
  usage: MessageDeltaUsage;
}

export namespace RawMessageDeltaEvent {
  export interface Delta {
    container: MessagesAPI.Container | null;
    stop_details: MessagesAPI.RefusalStopDetails | null;
    stop_reason: MessagesAPI.StopReason | null;
    stop_sequence: string | null;
  }
}

export interface RawMessageStartEvent {
  message: Message;
  type: 'message_start';
}

export interface RawMessageStopEvent {
  type: 'message_stop';
}

export type RawMessageStreamEvent =
  | RawMessageStartEvent
  | RawMessageDeltaEvent
  | RawMessageStopEvent
  | RawContentBlockStartEvent
  | RawContentBlockDeltaEvent
  | RawContentBlockStopEvent;

export interface RedactedThinkingBlock {
  data: string;
  type: 'redacted_thinking';
}

export interface RefusalStopDetails {
  category: 'cyber' | 'bio' | 'frontier_llm' | 'reasoning_extraction' | 'general_harms' | null;
  explanation: string | null;
  type: 'refusal';
}

export interface ServerToolCaller {
  tool_id: string;
  type: 'code_execution_20250825';
}

export interface ServerToolCaller20260120 {
  tool_id: string;
  type: 'code_execution_20260120';
}

export interface ServerToolUsage {
  web_fetch_requests: number;
  web_search_requests: number;
}

export interface ServerToolUseBlock {
  id: string;
  caller: DirectCaller | ServerToolCaller | ServerToolCaller20260120;
  input: unknown;
  name:
    | 'web_search'
    | 'web_fetch'
    | 'code_execution'
    | 'bash_code_execution'
    | 'text_editor_code_execution'
    | 'tool_search_tool_regex'
    | 'tool_search_tool_bm25';
  type: 'server_tool_use';
}

export interface SignatureDelta {
  signature: string;
  type: 'signature_delta';
}

export type StopReason =
  | 'end_turn'
  | 'max_tokens'
  | 'stop_sequence'
  | 'tool_use'
  | 'pause_turn'
  | 'refusal'
  | 'model_context_window_exceeded';

export interface TextBlock {
  citations: Array<TextCitation> | null;
  text: string;
  type: 'text';
}

export type TextCitation =
  | CitationCharLocation
  | CitationPageLocation
  | CitationContentBlockLocation
  | CitationsWebSearchResultLocation
  | CitationsSearchResultLocation;

export interface TextDelta {
  text: string;
  type: 'text_delta';
}

export interface TextEditorCodeExecutionCreateResultBlock {
  is_file_update: boolean;
  type: 'text_editor_code_execution_create_result';
}

export interface TextEditorCodeExecutionStrReplaceResultBlock {
  lines: Array<string> | null;
  new_lines: number | null;
  new_start: number | null;
  old_lines: number | null;
  old_start: number | null;
  type: 'text_editor_code_execution_str_replace_result';
}

export interface TextEditorCodeExecutionToolResultBlock {
  content:
    | TextEditorCodeExecutionToolResultError
    | TextEditorCodeExecutionViewResultBlock
    | TextEditorCodeExecutionCreateResultBlock
    | TextEditorCodeExecutionStrReplaceResultBlock;
  tool_use_id: string;
  type: 'text_editor_code_execution_tool_result';
}

export interface TextEditorCodeExecutionToolResultError {
  error_code: TextEditorCodeExecutionToolResultErrorCode;
  error_message: string | null;
  type: 'text_editor_code_execution_tool_result_error';
}

export type TextEditorCodeExecutionToolResultErrorCode =
  | 'invalid_tool_input'
  | 'unavailable'
  | 'too_many_requests'
  | 'execution_time_exceeded'
  | 'file_not_found';

export interface TextEditorCodeExecutionViewResultBlock {
  content: string;
  file_type: 'text' | 'image' | 'pdf';
  num_lines: number | null;
  start_line: number | null;
  total_lines: number | null;
  type: 'text_editor_code_execution_view_result';
}

export interface ThinkingBlock {
  signature: string;
  thinking: string;
  type: 'thinking';
}

export interface ThinkingDelta {
  thinking: string;
  type: 'thinking_delta';
}

export interface ToolReferenceBlock {
  tool_name: string;
  type: 'tool_reference';
}

export interface ToolSearchToolResultBlock {
  content: ToolSearchToolResultError | ToolSearchToolSearchResultBlock;
  tool_use_id: string;
  type: 'tool_search_tool_result';
}

export interface ToolSearchToolResultError {
  error_code: ToolSearchToolResultErrorCode;
  error_message: string | null;
  type: 'tool_search_tool_result_error';
}

export type ToolSearchToolResultErrorCode =
  | 'invalid_tool_input'
  | 'unavailable'
  | 'too_many_requests'
  | 'execution_time_exceeded';

export interface ToolSearchToolSearchResultBlock {
  tool_references: Array<ToolReferenceBlock>;
  type: 'tool_search_tool_search_result';
}

export interface ToolUseBlock {
  id: string;
  caller: DirectCaller | ServerToolCaller | ServerToolCaller20260120;
  input: unknown;
  name: string;
  type: 'tool_use';
  toolset_name?: string | null;
}

export interface Usage {
  cache_creation: CacheCreation | null;
  cache_creation_input_tokens: number | null;
  cache_read_input_tokens: number | null;
  inference_geo: string | null;
  input_tokens: number;
  output_tokens: number;
  output_tokens_details: OutputTokensDetails | null;
  server_tool_use: ServerToolUsage | null;
  service_tier: 'standard' | 'priority' | 'batch' | null;
}

export interface WebFetchBlock {
  content: DocumentBlock;
  retrieved_at: string | null;
  type: 'web_fetch_result';
  url: string;
}

export interface WebFetchToolResultBlock {
  caller: DirectCaller | ServerToolCaller | ServerToolCaller20260120;
  content: WebFetchToolResultErrorBlock | WebFetchBlock;
  tool_use_id: string;
  type: 'web_fetch_tool_result';
}

export interface WebFetchToolResultErrorBlock {
  error_code: WebFetchToolResultErrorCode;
  type: 'web_fetch_tool_result_error';
}

export type WebFetchToolResultErrorCode =
  | 'invalid_tool_input'
  | 'url_too_long'
  | 'url_not_allowed'
  | 'url_not_in_prior_context'
  | 'url_not_accessible'
  | 'unsupported_content_type'
  | 'too_many_requests'
  | 'max_uses_exceeded'
  | 'unavailable';

export interface WebSearchResultBlock {
  encrypted_content: string;
  page_age: string | null;
  title: string;
  type: 'web_search_result';
  url: string;
}

export interface WebSearchToolResultBlock {
  caller: DirectCaller | ServerToolCaller | ServerToolCaller20260120;
  content: WebSearchToolResultBlockContent;
  tool_use_id: string;
  type: 'web_search_tool_result';
}

export type WebSearchToolResultBlockContent = WebSearchToolResultError | Array<WebSearchResultBlock>;

export interface WebSearchToolResultError {
  error_code: WebSearchToolResultErrorCode;
  type: 'web_search_tool_result_error';
}

export type WebSearchToolResultErrorCode =
  | 'invalid_tool_input'
  | 'unavailable'
  | 'max_uses_exceeded'
  | 'too_many_requests'
  | 'query_too_long'
  | 'request_too_large';
