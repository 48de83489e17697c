-- Driven by test_neovim.py: `nvim --headless -u NONE -l neovim_session.lua SETTINGS.json OUT.json`.
-- Uses the documented plugin (clients/neovim) the way a user's config would, and writes what
-- came back to OUT.json.
local settings = vim.json.decode(table.concat(vim.fn.readfile(arg[1]), "\n"))
vim.opt.rtp:prepend(settings.plugin_dir)
local agent = require("llama_agent")
agent.setup({ cmd = settings.cmd, cmd_env = settings.cmd_env, root_dir = settings.root_dir })

local out = { progress = {} }
vim.api.nvim_create_autocmd("LspProgress", {
  callback = function(event)
    table.insert(out.progress, event.data.params.value)
  end,
})

local client = agent.client()
out.attached = #vim.lsp.get_clients({ bufnr = 0 })
out.capabilities = client.server_capabilities
-- Lua's {} goes out as [], as in every user's config.
out.listed = client:request_sync("tools/list", {}, 30000)
out.echo = client:request_sync("tools/invoke", { name = "echo", arguments = { value = "Something to echo" } }, 30000)
out.no_arguments = client:request_sync("tools/invoke", { name = "echo", arguments = {} }, 30000)

local done = false
agent.run(settings.prompt, function(err, result)
  out.run = { err = err, result = result }
  done = true
end)
vim.wait(60000, function()
  return done
end, 20)

client:stop()
vim.wait(10000, function()
  return client:is_stopped()
end, 20)
vim.fn.writefile({ vim.json.encode(out) }, arg[2])
vim.cmd("qa!")
