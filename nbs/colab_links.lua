-- colab_links.lua: a Quarto/Pandoc filter (listed under `filters:` in _quarto.yml) that puts
-- "Open in Colab" and "Open in Kaggle" links at the top of every notebook page, so no notebook has to
-- carry them by hand. The link target is the notebook's own file on GitHub, taken from the name of the
-- file being rendered (nbdev renders a copy of nbs/ with the same file names).
-- tools/check_docs.py checks the constants below and, where pandoc is installed, runs this filter.
local REPO = 'melanoma-nb/melanoma_nb'
local BRANCH = 'main'
local NBS_DIR = 'nbs'
local SKIP = { index = true }  -- the home page has nothing to run

local function input_path()
  if quarto ~= nil and quarto.doc ~= nil and quarto.doc.input_file ~= nil then
    return quarto.doc.input_file
  end
  if PANDOC_STATE ~= nil and PANDOC_STATE.input_files ~= nil and #PANDOC_STATE.input_files > 0 then
    return PANDOC_STATE.input_files[1]
  end
  return nil
end

-- Public so that it can be read and tested on its own.
function launch_links(stem)
  local file = NBS_DIR .. '/' .. stem .. '.ipynb'
  local github = 'https://github.com/' .. REPO .. '/blob/' .. BRANCH .. '/' .. file
  local colab = 'https://colab.research.google.com/github/' .. REPO .. '/blob/' .. BRANCH .. '/' .. file
  local kaggle = 'https://kaggle.com/kernels/welcome?src=' .. github
  return colab, kaggle
end

function Pandoc(doc)
  if not FORMAT:match('html') then return nil end
  local path = input_path()
  if path == nil then return nil end
  local stem = path:match('([^/\\]+)%.ipynb$')
  if stem == nil or SKIP[stem] then return nil end
  local colab, kaggle = launch_links(stem)
  local html = '<div class="launch-links">'
    .. '<a class="launch-link" href="' .. colab .. '">'
    .. '<img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open in Colab"></a> '
    .. '<a class="launch-link" href="' .. kaggle .. '">'
    .. '<img src="https://kaggle.com/static/images/open-in-kaggle.svg" alt="Open in Kaggle"></a>'
    .. '</div>'
  table.insert(doc.blocks, 1, pandoc.RawBlock('html', html))
  return doc
end
