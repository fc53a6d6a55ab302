-- The tool call a decision was about, so that coverage can be matched call by call.
ALTER TABLE audit ADD COLUMN tool_id TEXT;
