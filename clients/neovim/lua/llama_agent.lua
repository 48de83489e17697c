-- llama-agent in Neovim (0.11 or later): the daemon runs as an LSP client that attaches to no
-- buffer (it reads no documents), and two commands call its methods.
--
--   require("llama_agent").setup({ cmd = { "/path/to/llama-agent/.venv/bin/llama-agent", "serve" } })
--   :LlamaAgent Please echo back 'Something to echo'   -- agent/run; progress in LspProgress
--   :LlamaAgentTools                                   -- tools/list
--
-- From Lua: require("llama_agent").request(method, params, callback) for any of its methods.
local M = {}

M.config = {
  cmd = { "llama-agent", "serve" },
  -- Extra environment for the daemon, e.g. { LLAMA_AGENT_CACHE_DIR = "/tmp/cache" }.
  cmd_env = nil,
  -- The folder granted to the workspace tools; nil: Neovim's current directory.
  root_dir = nil,
  -- agent/run params besides the prompt, e.g. { maxSteps = 3, tools = { "calc" } }.
  run = {},
}

local runs = 0

--- The daemon's client, started on first use and shared by every call.
function M.client()
  local id = vim.lsp.start({
    name = "llama-agent",
    cmd = M.config.cmd,
    cmd_env = M.config.cmd_env,
    root_dir = M.config.root_dir or vim.fn.getcwd(),
  }, { attach = false })
  return assert(vim.lsp.get_client_by_id(id), "llama-agent did not start")
end

--- Send `method` with `params` (a table; `{}` is fine) and call `callback(err, result)`.
function M.request(method, params, callback)
  return M.client():request(method, params, callback)
end

--- agent/run: `callback(err, result)` gets the answer, the steps and the stop reason.
function M.run(prompt, callback)
  runs = runs + 1
  local params = vim.tbl_extend("force", M.config.run, {
    prompt = prompt,
    workDoneToken = "llama-agent-run-" .. runs,
  })
  return M.request("agent/run", params, callback)
end

local function report(err, text)
  if err then
    vim.notify("llama-agent: " .. err.message, vim.log.levels.ERROR)
  else
    vim.notify(text, vim.log.levels.INFO)
  end
end

function M.setup(opts)
  M.config = vim.tbl_deep_extend("force", M.config, opts or {})
  vim.api.nvim_create_user_command("LlamaAgent", function(command)
    M.run(command.args, function(err, result)
      report(err, result and result.answer)
    end)
  end, { nargs = "+", desc = "Ask llama-agent (agent/run)" })
  vim.api.nvim_create_user_command("LlamaAgentTools", function()
    M.request("tools/list", {}, function(err, result)
      local names = {}
      for _, tool in ipairs(result and result.tools or {}) do
        table.insert(names, tool.name .. ": " .. tool.description)
      end
      report(err, table.concat(names, "\n"))
    end)
  end, { desc = "List llama-agent's tools (tools/list)" })
end

return M
